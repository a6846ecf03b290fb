"""
Closing a listener with a queue
===============================

A server that stops by closing its listening socket drops the connections
still waiting in its accept queue, though their clients have connected and
may have sent their requests: the listener's ``close()`` sends each of them
an RST, at once. A client learns it at its next call: ``ECONNRESET``. A
server that first accepts everything queued, then closes the listener, can
answer every one of them.
"""

# %%
# Closing with connections queued
# -------------------------------
# Two clients connect and each sends a request. Their handshakes complete in
# the server's kernel, which acknowledges the requests too, but the server
# program has not called ``accept()`` yet. Then it closes the listener, as a
# restart would.
import select
import socket

import socklab

PORT = 4321
REQUEST = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def listener_and_two_queued_clients(lab):
    """A listener (backlog 8) and two clients, connected and with their requests sent, not accepted."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(8)
    clients = []
    for n, name in enumerate(["client A", "client B"]):
        client = socket.create_connection(("127.0.0.1", PORT))
        lab.name(client, name)
        lab.call(client.send, REQUEST, label="send request")
        lab.wait_packet(".", sport=PORT, after=n)  # the server's kernel ACKs it
        clients.append(client)
    lab.snapshot("two connections queued")
    return listener, clients


def close_with_queue(lab):
    listener, (a, b) = listener_and_two_queued_clients(lab)
    lab.call(listener.close, label="close() listener")
    lab.wait_packet("R.", sport=PORT, after=1)  # one reset for each queued connection
    lab.wait_state(a, None)
    lab.wait_state(b, None)
    lab.snapshot("after the listener's close")

    lab.wait_poll(a, select.POLLIN, label="poll(POLLIN)")
    lab.call(a.recv, 1024, label="recv response")
    lab.call(b.send, REQUEST, socket.MSG_NOSIGNAL, label="send again")
    lab.call(b.recv, 1024, label="recv response")


run = socklab.run(close_with_queue)

# %%
# Before the close, the listener's ``Recv-Q`` is the number of connections
# waiting in its accept queue (2) and its ``Send-Q`` the backlog (8). Each
# queued connection is already a full ``ESTAB`` socket on the server's
# side, holding its client's request (``Recv-Q`` 29), and each client is
# ``ESTAB`` too. After the close, everything is gone.
socklab.show(run.states())

# %%
# Client A, waiting for its response, is woken by the reset: ``poll()``
# reports ``POLLIN``, ``POLLERR`` and ``POLLHUP``, and ``recv()`` fails with
# ``ECONNRESET``. Client B's next call is a ``send()``, and it is that call
# which reports the reset; its ``recv()`` after it returns ``b''``. Neither
# request was read by any program, though both were acknowledged.
socklab.show(run.results())

# %%
# Two handshakes, two requests, each acknowledged; then, at the listener's
# ``close()``, two ``[R.]`` from port 4321, one to each client, in the order
# the connections were queued.
socklab.show(run.trace())

# %%
# The ladder draws one connection, client A's (it counts the other's
# packets below it): the request goes in and is acknowledged, and nothing
# more happens until the red ``RST-ACK`` leaves at the listener's
# ``close()``, a call on neither of the connection's sockets.
socklab.show(run.ladder())

# %%
# Accept everything first
# -----------------------
# The same two clients. This time the server, before closing the listener,
# accepts every connection already queued (a non-blocking ``accept()``
# until ``BlockingIOError``), closes the listener, and only then serves the
# connections it accepted: it reads each request, answers, and closes.


def accept_all_then_close(lab):
    listener, (a, b) = listener_and_two_queued_clients(lab)
    listener.setblocking(False)
    accepted = []
    while True:
        try:
            accepted.append(listener.accept()[0])
        except BlockingIOError:
            break
    lab.record("accepted before closing", len(accepted))
    lab.call(listener.close, label="close() listener")
    lab.snapshot("after the listener's close")

    for n, server in enumerate(accepted, 1):
        lab.call(server.recv, 1024, label=f"recv request #{n}")
        lab.call(server.send, RESPONSE, label=f"send response #{n}")
        lab.call(server.close, label=f"close() #{n}")
    for client in (a, b):
        lab.call(client.recv, 1024, label="recv response")
        lab.call(client.recv, 1024, label="recv again")


run_drained = socklab.run(accept_all_then_close)

# %%
# Closing the listener now resets nothing: its queue is empty, and the two
# connections it had queued belong to the program. Both clients read their
# response, then ``b''``: the server's FIN.
socklab.show(run_drained.states(), run_drained.results())

# %%
# No ``[R]`` anywhere: responses and FINs. This closes the gap only for the
# connections queued at the moment of the last ``accept()``: a client that
# connects between it and the ``close()`` is still reset, and one that
# connects after it is refused (the
# :ref:`previous page <sphx_glr_auto_examples_07_listeners_01_connection_refused.py>`).
# A restart that loses nothing needs the new process listening before the
# old one stops (for example two sockets on one port with ``SO_REUSEPORT``,
# or the listening socket handed from the old process to the new one).
socklab.show(run_drained.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
QUEUED = {"listener": {"state": "LISTEN", "recv_q": 2, "send_q": 8},
          "client A": ("ESTAB", 0), "client B": ("ESTAB", 0),
          "server:50000": ("ESTAB", len(REQUEST)), "server:50001": ("ESTAB", len(REQUEST))}
TWO_CLIENTS_QUEUED = ["client A [S]", "server [S.]", "client A [.]", "client A [P.]", "server [.]",
                      "client B [S]", "server [S.]", "client B [.]", "client B [P.]", "server [.]"]
run.expect(
    calls={"client A: poll(POLLIN)": "POLLIN|POLLERR|POLLHUP", "client A: recv response": "ECONNRESET",
           "client B: send again": "ECONNRESET", "client B: recv response": b""},
    flow=TWO_CLIENTS_QUEUED + ["server [R.]", "server [R.]"],
    states={"two connections queued": QUEUED,
            "after the listener's close": {"client A": None, "client B": None, "listener": None}},
)
with run.claim("the listener's close resets client A first, then client B"):
    assert [p.dport for p in run.packets[10:]] == [run.packets[0].sport, run.packets[5].sport]
run_drained.expect(
    calls={"client A: recv response": RESPONSE, "client A: recv again": b"",
           "client B: recv response": RESPONSE, "client B: recv again": b""},
    values={"accepted before closing": 2},
    states={"two connections queued": QUEUED,
            "after the listener's close": {"listener": None, "client A": "ESTAB", "client B": "ESTAB"}},
)
with run_drained.claim("both clients queued, then served: nothing is reset"):
    assert run_drained.flow()[:10] == TWO_CLIENTS_QUEUED, run_drained.flow()
    assert "R" not in "".join(p.flags for p in run_drained.packets)
run.summarize(closer="listener: close() listener", recv="client A: recv response")
socklab.show(run.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset of this page with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``). Recorded as root only: elsewhere these claims
# are reported as unchecked.
#
# * ``TCP_STATE``: the connection was aborted by the socket's own state change
#   (``close()`` with ``SO_LINGER {1, 0}``, or a listener closing with
#   connections in its queue), not by unread data.
#
# The table below is the kernel's own account of this page's run: every state
# change of its sockets (the brief ones too); every reset sent, with the
# kernel's reason and the state of the socket that sent it where one did, and
# every reset taken; any segment the kernel dropped; and the TCP counters of
# the run's namespace that moved. Recorded as root only, like the reasons.
run.expect(resets=[('server', 'TCP_STATE'), ('server', 'TCP_STATE')])
socklab.show(run.events())

# %%
# .. admonition:: References
#
#    ``listen(2)`` ("The backlog argument defines the maximum length to which the queue of
#    pending connections for sockfd may grow"), ``accept(2)`` (``EAGAIN`` or
#    ``EWOULDBLOCK``: "The socket is marked nonblocking and no connections are present to
#    be accepted"), ``close(2)``, ``recv(2)``, ``send(2)`` (``ECONNRESET``), ``poll(2)``,
#    ``socket(7)`` (``SO_REUSEPORT``), ``ss(8)`` (for a listening socket, ``Recv-Q`` and
#    ``Send-Q`` are the accept queue's length and its limit); RFC 9293 section 3.10.4
#    (CLOSE in SYN-RECEIVED or ESTABLISHED) and section 3.10.5 (ABORT: "Send a reset
#    segment").
