"""
Request queued when the server closed
=====================================

The other side of the keep-alive race: the client's request has already
reached the server's kernel, and sits unread in its receive queue, when the
server program closes the idle connection. Because data is unread, the
server's ``close()`` sends an RST instead of a FIN. The client's ``send()``
had succeeded; its ``recv()`` now fails with ``ECONNRESET`` (not the
``b''`` of the :ref:`previous page
<sphx_glr_auto_examples_06_server_closed_on_you_01_keepalive_race.py>`), and
its next ``send()`` with ``EPIPE``.
"""

# %%
# The scenario
# ------------
# One request and its response, then the client sends its second request.
# The scenario waits until the server's kernel has acknowledged it: the
# bytes are in the server's ``Recv-Q``. The server program, which has not
# read them (its idle timer fired just before they came), closes.
import http.client
import select
import socket

import socklab

PORT = 4321
REQUEST = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def connected_pair():
    """A listener on 127.0.0.1:4321, a client, the accepted server socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def request_queued_at_close(lab):
    listener, client, server = connected_pair()
    lab.call(client.send, REQUEST, label="send request #1")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the request
    lab.call(server.recv, 1024, label="recv request #1")
    lab.call(server.send, RESPONSE, label="send response #1")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the response
    lab.call(client.recv, 1024, label="recv response #1")

    lab.call(client.send, REQUEST, label="send request #2")
    lab.wait_packet(".", sport=PORT, after=1)  # the server's kernel ACKs it (it may delay the ACK)
    lab.snapshot("request #2 queued at the server")

    lab.call(server.close, label="close(), request #2 unread")
    lab.wait_packet("R.", sport=PORT)
    lab.wait_state(client, None)  # the client's kernel took the reset in
    lab.snapshot("after the server's close")

    lab.call(client.recv, 1024, label="recv response #2")
    lab.call(client.recv, 1024, label="recv again")
    lab.call(client.send, REQUEST, socket.MSG_NOSIGNAL, label="send request #3")


run = socklab.run(request_queued_at_close)

# %%
# Socket states
# -------------
# Before the close, the server's ``Recv-Q`` holds the 29 bytes of the second
# request: delivered to the server's kernel, not to the program. After the
# close there is no ``FIN-WAIT`` and no ``CLOSE-WAIT``: both sockets are gone
# at once.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``send request #2`` returned 29, and the server's kernel even acknowledged
# the bytes; the server program never saw them. The client's first ``recv()``
# fails with ``ECONNRESET``, the next returns ``b''``, and a third ``send()``
# fails with ``EPIPE``. (Python's ``http.client`` raises
# ``ConnectionResetError`` here, where the previous page's ``b''`` gave
# ``RemoteDisconnected``: the last run below.) Neither outcome tells the client whether the
# server acted on its request: in this run it did not even read it, but an
# ``ECONNRESET`` can as well follow a request the server processed. Retrying
# is safe only for a request that may run twice.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The first exchange, the second request ``[P.]`` and the server's ``[.]``
# acknowledging it, then the server's ``[R.]`` where an ordinary close
# would send ``[F.]``. Its ``ack`` is the end of the second request: the
# server's kernel had received it all. The line under the trace says how
# long that ACK took in this run (the kernel may delay an ACK by some 40 ms;
# the scenario waits for it).
socklab.show(run.trace())
with run.claim("the line under the trace: how long the server's ACK of request #2 took"):
    request, ack = run.packets[7], run.packets[8]
    print(f"the server's ACK of request #2 left {(ack.time_ns - request.time_ns) / 1e6:.1f} ms after it")

# %%
# The ladder: the second request and its ACK, then the red ``RST-ACK``
# leaving at the server's ``close()``; the client's calls below it report
# the reset.
socklab.show(run.ladder())

# %%
# What http.client says
# ---------------------
# The same with Python's ``http.client`` as the client: one request and its
# response, a second request, and the server's close once that request is
# in its receive queue (``poll()`` reports it readable).


def http_client_request_queued(lab):
    listener = socket.create_server(("127.0.0.1", PORT))
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    conn.connect()
    server, _ = listener.accept()
    conn.request("GET", "/")
    server.recv(1024)
    server.send(RESPONSE)
    lab.record("response #1", conn.getresponse().read())
    conn.request("GET", "/")
    lab.wait_poll(server, select.POLLIN, label="poll(POLLIN)")  # request #2 has arrived
    lab.call(server.close, label="close(), request #2 unread")
    try:
        conn.getresponse()
    except OSError as e:
        lab.record("getresponse() raised", f"{type(e).__name__}: {e}")


run_http = socklab.run(http_client_request_queued)

# %%
# ``getresponse()`` raises ``ConnectionResetError``: the ``ECONNRESET`` of
# ``recv()``, where the previous page's end of file gave
# ``RemoteDisconnected``.
socklab.show(run_http.results())

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={"client: send request #2": len(REQUEST), "client: recv response #2": "ECONNRESET",
           "client: recv again": b"", "client: send request #3": "EPIPE"},
    flow=["client [S]", "server [S.]", "client [.]",
          "client [P.]", "server [.]", "server [P.]", "client [.]",
          "client [P.]", "server [.]", "server [R.]"],
    states={
        "request #2 queued at the server": {"client": ("ESTAB", 0), "server": ("ESTAB", len(REQUEST))},
        "after the server's close": {"client": None, "server": None},
    },
    packets={9: {"flags": "R.", "ack": 1 + 2 * len(REQUEST)}},  # both requests received
)
run_http.expect(
    calls={"server: poll(POLLIN)": "POLLIN"},
    values={"response #1": b"ok", "getresponse() raised": "ConnectionResetError: [Errno 104] Connection reset by peer"},
)
# For the site's matrix: the close and the client's first recv() (its
# send() came after the recv(), an order the matrix's columns cannot show).
run.summarize(closer="server: close(), request #2 unread", recv="client: recv response #2")
socklab.show(run.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset of this page with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``). Recorded as root only: elsewhere these claims
# are reported as unchecked.
#
# * ``TCP_ABORT_ON_CLOSE``: ``close()`` found unread data in the receive queue
#   and aborted the connection (RFC 9293 3.6.1).
#
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
run.expect(resets=[('server', 'TCP_ABORT_ON_CLOSE')])
run_http.expect(resets=[('server', 'TCP_ABORT_ON_CLOSE')])
socklab.show(run.events())

# %%
# .. admonition:: References
#
#    ``close(2)``, ``recv(2)``, ``send(2)`` (``ECONNRESET``: "Connection reset by peer";
#    ``EPIPE``, ``MSG_NOSIGNAL``); RFC 9293 section 3.6.1 ("If such a host issues a CLOSE
#    call while received data is still pending in the TCP connection, or if new data is
#    received after CLOSE is called, its TCP implementation SHOULD send an RST to show
#    that data was lost"), RFC 1122 section 4.2.2.13; RFC 9110 section 9.2.2 (idempotent
#    methods, the requests a client may retry); RFC 9112 section 9.3.1 (retrying requests).
