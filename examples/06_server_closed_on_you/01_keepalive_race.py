"""
Request on a closed keep-alive connection
=========================================

A client reuses an idle keep-alive connection that the server has just
closed. Its kernel has already received the server's FIN, yet ``send()``
succeeds: the FIN only said the server will send nothing more. The server's
kernel answers the request with an RST, and the client's ``recv()`` then
returns ``b''``, not ``ECONNRESET``: the end of file the FIN announced comes
first. Python's ``http.client`` reports this as "Remote end closed
connection without response". The client could have known before sending:
``poll()`` already reports the FIN.
"""

# %%
# The scenario
# ------------
# One request and its response, as on any keep-alive connection; then the
# connection sits idle and the server's idle timeout closes it. The scenario
# waits until the server's kernel has the client's ACK of that FIN (the server
# is in ``FIN-WAIT-2``): the FIN arrived well before the next request, as
# when a connection has been idle in a pool. Only then does the client send
# its second request on the same socket.
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


def first_exchange_then_idle_close(lab, client, server):
    """Request #1 and its response (each ACKed on its own), then the server's idle close."""
    lab.call(client.send, REQUEST, label="send request #1")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the request
    lab.call(server.recv, 1024, label="recv request #1")
    lab.call(server.send, RESPONSE, label="send response #1")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the response
    lab.call(client.recv, 1024, label="recv response #1")
    lab.snapshot("idle, kept alive")

    lab.call(server.close, label="close(), idle timeout")
    lab.wait_packet(".", dport=PORT, after=2)  # the client's kernel ACKs the FIN
    lab.wait_state(server, "FIN_WAIT2")  # ... and the server's kernel took the ACK in
    lab.wait_state(client, "CLOSE_WAIT")
    lab.snapshot("after the server's close")


def keepalive_race(lab):
    listener, client, server = connected_pair()
    first_exchange_then_idle_close(lab, client, server)

    lab.call(client.send, REQUEST, label="send request #2")
    lab.wait_packet("R", sport=PORT)  # the server's kernel answers with a reset
    lab.wait_state(client, None)  # ... which the client's kernel took in
    lab.snapshot("after request #2")

    lab.call(client.recv, 1024, label="recv response #2")
    lab.call(client.recv, 1024, label="recv again")
    lab.call(client.send, REQUEST, socket.MSG_NOSIGNAL, label="send request #3")


run = socklab.run(keepalive_race)

# %%
# Socket states
# -------------
# While idle, both sockets are ``ESTAB`` with empty queues. After the
# server's close, the client is in ``CLOSE-WAIT`` with ``Recv-Q`` 1 (the FIN,
# not yet read) and the server's socket, which no program holds any more, in
# ``FIN-WAIT-2``. After the second request both are gone.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``send request #2`` returns its full length: the client's kernel accepted
# the bytes, as it must in ``CLOSE-WAIT`` (the peer only said it would send
# no more). The ``recv()`` after the reset returns ``b''``, and so does the
# next one: the FIN's end of file, not the reset's error. Only the third
# ``send()`` fails, with ``EPIPE``. The client never sees ``ECONNRESET``;
# what it sees is an end of file where the response should be (Python's
# ``http.client`` raises ``RemoteDisconnected``, as the last run below shows).
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The exchange, the server's ``[F.]`` and the client's ``[.]`` acknowledging
# it, then the client's second request ``[P.]`` and the server's ``[R]``.
# The reset carries no ACK flag: its sequence number is the request's
# acknowledgment number, as RFC 9293 asks of a reset answering a segment
# that carries an ACK. The line under the trace says how long the client's
# kernel took to acknowledge the FIN in this run: it may delay an ACK by
# some 40 ms, hoping to send it with data. The scenario waits for that ACK,
# so nothing on the page depends on its timing.
socklab.show(run.trace())
with run.claim("the line under the trace: how long the client's ACK of the FIN took"):
    print(f"the client's ACK of the FIN left {(run.packets[8].time_ns - run.packets[7].time_ns) / 1e6:.1f} ms after it")

# %%
# The ladder: the request crosses to a server that no longer has a program
# behind it, and the red ``RST`` comes straight back. The client's
# ``recv()`` calls sit below the reset and still return ``b''``.
socklab.show(run.ladder())

# %%
# Checking before reuse
# ---------------------
# The same connection up to the server's close; this time, before reusing
# it, the client asks ``poll()`` with a zero timeout whether the socket is
# readable, and peeks at it with ``MSG_PEEK | MSG_DONTWAIT``. An idle
# keep-alive connection has nothing to read; if it is readable, the server
# has closed it (or sent something unexpected), and the client should open
# a new connection instead.


def check_before_reuse(lab):
    listener, client, server = connected_pair()
    first_exchange_then_idle_close(lab, client, server)

    lab.wait_poll(client, select.POLLIN | select.POLLRDHUP, timeout=0, label="poll(), timeout 0")
    lab.call(client.recv, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT, label="recv(MSG_PEEK)")
    lab.call(client.close, label="close(), stale")  # and connect anew
    lab.wait_packet(".", sport=PORT, after=1)  # the server's kernel ACKs that FIN


run_check = socklab.run(check_before_reuse)

# %%
# ``poll()`` returns at once with ``POLLIN`` and ``POLLRDHUP`` (the peer shut
# its sending side), and the peek returns ``b''``: end of file, without
# consuming anything. The client closes the stale connection: its FIN is
# acknowledged, no request was sent, and no reset follows.
socklab.show(run_check.results())

# %%
# The check narrows the race; it does not close it. A server may close the
# connection just after the check, while the request is on its way; that
# request then meets the server's closed socket as above, or arrives while
# the server program is closing with it unread (the next page). Only a
# retry on a new connection, for a request that is safe to repeat, makes
# the client robust; this is why RFC 9112 tells clients to "anticipate the
# need to recover from asynchronous close events".
socklab.show(run_check.trace())

# %%
# What http.client says
# ---------------------
# The first run again, with Python's ``http.client`` as the client: one
# request and its response on a keep-alive connection, the server's idle
# close, and a second request on the same connection.


def http_client_reuses(lab):
    listener = socket.create_server(("127.0.0.1", PORT))
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    conn.connect()
    server, _ = listener.accept()
    conn.request("GET", "/")
    server.recv(1024)
    server.send(RESPONSE)
    lab.record("response #1", conn.getresponse().read())
    lab.call(server.close, label="close(), idle timeout")
    lab.wait_state(conn.sock, "CLOSE_WAIT")  # the FIN is in
    conn.request("GET", "/")
    lab.call(conn.getresponse, label="getresponse() #2", on=conn.sock)  # on: the socket it reads from


run_http = socklab.run(http_client_reuses)

# %%
# ``getresponse()`` raises ``RemoteDisconnected``, "Remote end closed
# connection without response": the ``b''`` of the first run, in
# ``http.client``'s words (it is a subclass of ``ConnectionResetError``,
# though the kernel reported no reset to the program). This run waits only
# for the FIN to reach the client, not for the client's ACK of it, so the
# second request may leave before that ACK and carry it: the server's
# socket then meets the request in ``FIN-WAIT-1`` rather than
# ``FIN-WAIT-2``. The server's FIN has reached the client either way, and so
# has its end of file.
socklab.show(run_http.results())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
EXCHANGE_AND_CLOSE = ["client [S]", "server [S.]", "client [.]",
                      "client [P.]", "server [.]", "server [P.]", "client [.]",
                      "server [F.]", "client [.]"]
run.expect(
    calls={"client: send request #2": len(REQUEST), "client: recv response #2": b"",
           "client: recv again": b"", "client: send request #3": "EPIPE"},
    flow=EXCHANGE_AND_CLOSE + ["client [P.]", "server [R]"],
    states={
        "idle, kept alive": {"client": ("ESTAB", 0), "server": ("ESTAB", 0)},
        "after the server's close": {"client": ("CLOSE_WAIT", 1), "server": "FIN_WAIT2"},
        "after request #2": {"client": None, "server": None},
    },
    packets={10: {"flags": "R"}},
)
with run.claim("the reset takes its seq from the request's ack"):
    assert run.packets[10].seq == run.packets[9].ack
run_check.expect(
    calls={"client: poll(), timeout 0": "POLLIN|POLLRDHUP", "client: recv(MSG_PEEK)": b""},
    flow=EXCHANGE_AND_CLOSE + ["client [F.]", "server [.]"],
)
run_http.expect(
    values={"response #1": b"ok"},
    calls={"client: getresponse() #2": "http.client.RemoteDisconnected"},
)
assert run_http.call("getresponse() #2").message == "Remote end closed connection without response"
run.summarize(closer="server: close(), idle timeout",
              sends=["client: send request #2", "client: send request #3"], recv="client: recv response #2")
socklab.show(run.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset of this page with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``). Recorded as root only: elsewhere these claims
# are reported as unchecked.
#
# * ``TCP_TIMEWAIT_SOCKET``: a socket its program had closed, kept by the
#   kernel as a small timewait socket, answered data nobody would read.
#
# The table below is the kernel's own account of this page's run: every state
# change of its sockets (the brief ones too); every reset sent, with the
# kernel's reason and the state of the socket that sent it where one did, and
# every reset taken; any segment the kernel dropped; and the TCP counters of
# the run's namespace that moved. Recorded as root only, like the reasons.
run.expect(resets=[('server', 'TCP_TIMEWAIT_SOCKET')])
socklab.show(run.events())

# %%
# .. admonition:: References
#
#    ``send(2)`` (``EPIPE``, ``MSG_NOSIGNAL``), ``recv(2)`` ("When a stream socket peer has
#    performed an orderly shutdown, the return value will be 0"; ``MSG_PEEK``,
#    ``MSG_DONTWAIT``), ``poll(2)`` (``POLLRDHUP``: "Stream socket peer closed connection,
#    or shut down writing half of connection"); RFC 9293 section 3.6.1 ("if new data is
#    received after CLOSE is called, its TCP implementation SHOULD send a RST"; the kernel
#    answers from its timewait socket), section 3.5.2 (reset generation:
#    "If the incoming segment has an ACK field, the reset takes its sequence number from
#    the ACK field of the segment"); RFC 9112 section 9.3.1 ("Connections can be closed
#    at any time, with or without intention. Implementations ought to anticipate the
#    need to recover from asynchronous close events").
