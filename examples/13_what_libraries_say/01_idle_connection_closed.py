"""
Idle keep-alive connection closed
=================================

The server closes an idle keep-alive connection; the client sends its next
request on it anyway. The kernel's side is the same for every client: the
FIN has arrived, the request goes out, the server's kernel answers it with an
RST. What the program is told differs. A raw socket's ``recv()`` returns
``b''``; Python's ``http.client`` raises ``RemoteDisconnected``, "Remote end
closed connection without response"; asyncio streams raise
``IncompleteReadError``. None of them reports the reset: the end of file
that the FIN announced comes first. Three runs, one per client, each checked
to have put the same packets on the wire.
"""

# %%
# The scenario
# ------------
# One request and its response on a keep-alive connection; then the server's
# idle timeout closes it, and the scenario waits until the server's kernel has
# the client's ACK of that FIN (the server is in ``FIN-WAIT-2``, the client in
# ``CLOSE-WAIT``), as when a connection has sat idle in a pool. Then the
# client sends its second request on the same connection, and the scenario
# waits for the server's RST to be taken in before the client reads. The
# server is a plain socket in every run; the client is a raw socket, an
# ``http.client.HTTPConnection``, then an asyncio stream. Each library call is
# recorded with what it returned, or the exception it raised and its message
# (``lab.call(..., on=sock)`` names the socket the call works on; ``catch=``
# records an exception that is not an ``OSError``).
import asyncio
import http.client
import socket

import socklab

PORT = 4321
REQUEST = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def listen():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    return listener


def serve_one_response(lab, server):
    """The request has arrived (the server's kernel ACKed it): read it, answer it, wait for the ACK."""
    lab.wait_packet(".", sport=PORT)
    server.recv(1024)
    server.send(RESPONSE)
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the response


def idle_close(lab, client, server):
    """The server's idle timeout: close(), and wait until its FIN is in and ACKed."""
    lab.call(server.close, label="close(), idle timeout")
    lab.wait_packet(".", dport=PORT, after=2)  # the client's kernel ACKs the FIN
    lab.wait_state(server, "FIN_WAIT2")
    lab.wait_state(client, "CLOSE_WAIT")
    lab.snapshot("after the server's close")


def wait_reset(lab, client):
    lab.wait_packet("R", sport=PORT)  # the server's kernel answers the request with a reset
    lab.wait_state(client, None)  # ... which the client's kernel took in
    lab.snapshot("after request #2")


def raw_socket(lab):
    listener = listen()
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    client.send(REQUEST)
    serve_one_response(lab, server)
    lab.call(client.recv, 1024, label="recv response #1")
    idle_close(lab, client, server)

    lab.call(client.send, REQUEST, label="send request #2")
    wait_reset(lab, client)
    lab.call(client.recv, 1024, label="recv response #2")


def with_http_client(lab):
    listener = listen()
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    conn.connect()
    server, _ = listener.accept()
    conn.request("GET", "/")
    serve_one_response(lab, server)
    lab.call(conn.getresponse().read, label="response #1 .read()", on=conn.sock)
    idle_close(lab, conn.sock, server)

    lab.call(conn.request, "GET", "/", label="request() #2", on=conn.sock)
    wait_reset(lab, conn.sock)
    lab.call(conn.getresponse, label="getresponse() #2", on=conn.sock)


def with_asyncio_streams(lab):
    listener = listen()
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    loop = asyncio.new_event_loop()
    reader, writer = loop.run_until_complete(asyncio.open_connection(sock=client))
    writer.write(REQUEST)
    serve_one_response(lab, server)
    loop.run_until_complete(reader.readuntil(b"\r\n\r\n"))
    lab.call(loop.run_until_complete, reader.readexactly(2), label="await readexactly(2) #1", on=client)
    idle_close(lab, client, server)

    lab.call(writer.write, REQUEST, label="write() #2", on=client)
    lab.call(loop.run_until_complete, writer.drain(), label="await drain() #2", on=client)
    wait_reset(lab, client)
    lab.call(loop.run_until_complete, reader.readuntil(b"\r\n\r\n"), label="await readuntil() #2", on=client,
             catch=asyncio.IncompleteReadError)
    loop.close()


raw = socklab.run(raw_socket)
library = socklab.run(with_http_client)
streams = socklab.run(with_asyncio_streams)

# %%
# What each client was told
# -------------------------
# The second request's answer, in each program's words, read from the three
# runs. The raw socket's ``recv()`` returns ``b''``: end of file. The reset
# that followed the FIN does not turn that into ``ECONNRESET`` (the
# :ref:`keep-alive race <sphx_glr_auto_examples_06_server_closed_on_you_01_keepalive_race.py>`
# page shows that only the next ``send()`` fails, with ``EPIPE``).
# ``http.client`` reads that end of file where a status line should be and
# raises ``RemoteDisconnected``; it is a subclass of ``ConnectionResetError``
# (checked below), so ``except ConnectionResetError`` catches it, though the
# kernel reported no reset to the program. asyncio's ``readuntil()`` raises
# ``IncompleteReadError`` (an ``EOFError``), with the 0 bytes it read.
ANSWERS = {"raw socket": (raw, "client: recv response #2"),
           "http.client": (library, "client: getresponse() #2"),
           "asyncio streams": (streams, "client: await readuntil() #2")}
for client_kind, (one_run, key) in ANSWERS.items():
    answer = one_run.call(key)
    said = f"raised {answer.exception}: {answer.message}" if answer.failed else f"returned {answer.returned}"
    print(f"{client_kind:16} {answer.label:22} {said}")

# %%
# Socket states
# -------------
# The same in every run; here the raw socket's. After the server's close the
# client is in ``CLOSE-WAIT`` with ``Recv-Q`` 1 (the FIN, unread), the
# server's socket, which no program holds, in ``FIN-WAIT-2``. After the
# second request both are gone.
socklab.show(raw.states())

# %%
# Call results
# ------------
# Each run's recorded calls. The writes succeed everywhere: ``send()``
# returns the request's length, ``http.client``'s ``request()`` returns
# ``None``, and so do asyncio's ``write()`` and ``drain()`` (the drain ran
# before the reset arrived). Only the read of the second response fails, in
# the library runs.
socklab.show(raw.results(), library.results(), streams.results())

# %%
# Packet trace
# ------------
# The raw socket's run: the exchange, the server's ``[F.]`` and the client's
# ``[.]``, the second request ``[P.]`` and the server's ``[R]``. The claims
# below check that the other two runs put the same flags on the wire in the
# same order.
socklab.show(raw.trace())

# %%
# The ladder of the ``http.client`` run: the request crosses to a server with
# no program behind it, and the red RST comes back before
# ``getresponse()`` is called.
socklab.show(library.ladder())

# %%
# The kernel's account
# --------------------
# The kernel's own events of the ``http.client`` run (recorded as root, for
# this run's network namespace only). The server's socket ends its life as a
# timewait socket in ``FIN_WAIT2``; the RST is sent for it with the reason
# ``TCP_TIMEWAIT_SOCKET``, and the client's socket takes it in
# ``CLOSE_WAIT``: after its end of file.
socklab.show(library.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel or a library does anything
# else, the build fails here and says which claim broke. The exceptions are
# this Python's: another version may word them differently.
FLOW = ["client [S]", "server [S.]", "client [.]",
        "client [P.]", "server [.]", "server [P.]", "client [.]",
        "server [F.]", "client [.]", "client [P.]", "server [R]"]
STATES = {"after the server's close": {"client": ("CLOSE_WAIT", 1), "server": "FIN_WAIT2"},
          "after request #2": {"client": None, "server": None}}
raw.expect(calls={"client: send request #2": len(REQUEST), "client: recv response #2": b""},
           flow=FLOW, states=STATES)
library.expect(calls={"client: response #1 .read()": b"ok", "client: request() #2": None,
                      "client: getresponse() #2": "http.client.RemoteDisconnected"},
               flow=FLOW, states=STATES)
streams.expect(calls={"client: await readexactly(2) #1": b"ok", "client: write() #2": None,
                      "client: await drain() #2": None,
                      "client: await readuntil() #2": "asyncio.exceptions.IncompleteReadError"},
               flow=FLOW, states=STATES)
assert library.call("getresponse() #2").message == "Remote end closed connection without response"
assert issubclass(http.client.RemoteDisconnected, ConnectionResetError)
assert issubclass(asyncio.IncompleteReadError, EOFError)
socklab.show(library.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``), and the states the client's socket went
# through. Recorded as root only: elsewhere these claims are reported as
# unchecked.
#
# * ``TCP_TIMEWAIT_SOCKET``: a socket its program had closed, kept by the
#   kernel as a small timewait socket, answered data nobody would read.
for one_run in (raw, library, streams):
    one_run.expect(resets=[("server", "TCP_TIMEWAIT_SOCKET")],
                   transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"]})

# %%
# .. admonition:: References
#
#    Python's documentation: ``http.client.RemoteDisconnected`` ("Subclass of
#    ConnectionResetError and BadStatusLine. Raised by
#    HTTPConnection.getresponse() when the attempt to read the response results
#    in no data read from the connection, indicating that the remote end has
#    closed the connection"); ``asyncio.StreamReader.readuntil`` ("If EOF is
#    reached before the complete separator is found, an IncompleteReadError
#    exception will be raised"). ``recv(2)`` ("When a stream socket peer has
#    performed an orderly shutdown, the return value will be 0"); RFC 9293
#    section 3.10.7.4 (a segment arriving in FIN-WAIT-2 after the user's
#    CLOSE); RFC 9112 section 9.3.1 ("Implementations ought to anticipate the
#    need to recover from asynchronous close events").
