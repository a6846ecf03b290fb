"""
Server closed with the request unread
=====================================

The server closes a connection without reading the request that has
arrived on it: its kernel sends an RST, not a FIN. This time every client is
told the same thing: a raw socket's ``recv()`` fails with ``ECONNRESET``,
and Python's ``http.client`` and asyncio streams both raise
``ConnectionResetError: [Errno 104] Connection reset by peer``, the
kernel's error passed on unchanged. Three runs, one per client, each checked
to have put the same packets on the wire.
"""

# %%
# The scenario
# ------------
# The client sends a request; the scenario waits until the server's kernel
# has acknowledged it. The server program never reads it, and closes: a
# server shutting down, or one that gave up on a slow client. The scenario
# waits for the RST and for the client's kernel to take it in; only then
# does the client read its response. The server is a plain socket in every
# run; the client is a raw socket, an ``http.client.HTTPConnection``, then an
# asyncio stream. Each call is recorded with what it returned or raised
# (``lab.call(..., on=sock)`` names the socket a library call works on).
import asyncio
import http.client
import socket

import socklab

PORT = 4321
REQUEST = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"


def listen():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    return listener


def close_unread(lab, client, server):
    """The request has arrived (the server's kernel ACKed it); the server closes without reading it."""
    lab.wait_packet(".", sport=PORT)
    lab.snapshot("request arrived, unread")
    lab.call(server.close, label="close(), request unread")
    lab.wait_packet("R.", sport=PORT)
    lab.wait_state(client, None)  # the client's kernel took the reset in
    lab.snapshot("after the server's close")


def raw_socket(lab):
    listener = listen()
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.call(client.send, REQUEST, label="send request")
    close_unread(lab, client, server)
    lab.call(client.recv, 1024, label="recv response")
    lab.call(client.recv, 1024, label="recv again")


def with_http_client(lab):
    listener = listen()
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    conn.connect()
    server, _ = listener.accept()
    lab.call(conn.request, "GET", "/", label="request()", on=conn.sock)
    close_unread(lab, conn.sock, server)
    lab.call(conn.getresponse, label="getresponse()", on=conn.sock)


def with_asyncio_streams(lab):
    listener = listen()
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    loop = asyncio.new_event_loop()
    reader, writer = loop.run_until_complete(asyncio.open_connection(sock=client))
    lab.call(writer.write, REQUEST, label="write()", on=client)
    lab.call(loop.run_until_complete, writer.drain(), label="await drain()", on=client)
    close_unread(lab, client, server)
    lab.call(loop.run_until_complete, reader.readuntil(b"\r\n\r\n"), label="await readuntil()", on=client,
             catch=asyncio.IncompleteReadError)
    loop.close()


raw = socklab.run(raw_socket)
library = socklab.run(with_http_client)
streams = socklab.run(with_asyncio_streams)

# %%
# What each client was told
# -------------------------
# The response's read, in each program's words, read from the three runs.
# The same exception three times, with the kernel's errno: an RST that
# arrives in ``ESTAB`` is reported as ``ECONNRESET`` by the first call that
# looks, whoever makes it. Compare :ref:`the idle connection
# <sphx_glr_auto_examples_13_what_libraries_say_01_idle_connection_closed.py>`
# the server closed, where a FIN came first and each client said something
# else.
ANSWERS = {"raw socket": (raw, "client: recv response"),
           "http.client": (library, "client: getresponse()"),
           "asyncio streams": (streams, "client: await readuntil()")}
for client_kind, (one_run, key) in ANSWERS.items():
    answer = one_run.call(key)
    said = f"raised {answer.exception}: {answer.message}" if answer.failed else f"returned {answer.returned}"
    print(f"{client_kind:16} {answer.label:18} {said}")

# %%
# Socket states
# -------------
# Before the close, the server's ``Recv-Q`` holds the unread request. After
# it both sockets are gone: the server's went straight to ``CLOSE`` with its
# RST, and the client's on taking the RST in.
socklab.show(raw.states())

# %%
# Call results
# ------------
# Each run's calls. The writes succeeded before the close. The raw socket's
# second ``recv()`` returns ``b''``: the kernel reports a reset once, then
# the socket reads as closed.
socklab.show(raw.results(), library.results(), streams.results())

# %%
# Packet trace
# ------------
# The ``http.client`` run: the handshake, the request ``[P.]`` and its
# ``[.]``, then the server's ``[R.]``: no FIN. The claims below check that
# the three runs put the same flags on the wire in the same order.
socklab.show(library.trace())
socklab.show(library.ladder())

# %%
# The kernel's account
# --------------------
# The kernel's own events of the asyncio run (as root). The server's socket
# goes from ``TCP_ESTABLISHED`` straight to ``TCP_CLOSE`` and sends the RST
# with the reason ``TCP_ABORT_ON_CLOSE``: it was closed with data unread.
# The client's socket takes the reset in ``TCP_ESTABLISHED``, which is why
# the error is ``ECONNRESET`` (``tcp_reset()`` picks the errno by the state:
# ``EPIPE`` in ``TCP_CLOSE_WAIT``, ``ECONNREFUSED`` in ``TCP_SYN_SENT``).
socklab.show(streams.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel or a library does anything
# else, the build fails here and says which claim broke.
FLOW = ["client [S]", "server [S.]", "client [.]", "client [P.]", "server [.]", "server [R.]"]
STATES = {"request arrived, unread": {"client": ("ESTAB", 0), "server": ("ESTAB", len(REQUEST))},
          "after the server's close": {"client": None, "server": None}}
raw.expect(calls={"client: send request": len(REQUEST), "client: recv response": "ECONNRESET",
                  "client: recv again": b""},
           flow=FLOW, states=STATES)
library.expect(calls={"client: request()": None, "client: getresponse()": "ECONNRESET"},
               flow=FLOW, states={"after the server's close": STATES["after the server's close"]})
streams.expect(calls={"client: write()": None, "client: await drain()": None,
                      "client: await readuntil()": "ECONNRESET"},
               flow=FLOW, states=STATES)
for one_run, key in ANSWERS.values():
    assert one_run.call(key).exception == "ConnectionResetError", one_run.call(key)
    assert one_run.call(key).message == "[Errno 104] Connection reset by peer", one_run.call(key)
socklab.show(streams.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``), and the states the client's socket went
# through. Recorded as root only: elsewhere these claims are reported as
# unchecked.
#
# * ``TCP_ABORT_ON_CLOSE``: the program closed the socket with data it had
#   not read; RFC 2525 section 2.17 asks for a reset then, so that the peer
#   learns the data was lost.
for one_run in (raw, library, streams):
    one_run.expect(resets=[("server", "TCP_ABORT_ON_CLOSE")],
                   transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE"]})

# %%
# .. admonition:: References
#
#    ``recv(2)`` (``ECONNRESET``: "A connection was forcibly closed by a
#    peer"); RFC 2525 section 2.17 ("Failure to RST on close with data
#    pending"); RFC 9293 section 3.10.4 (CLOSE) and 3.10.7.4 (a reset
#    received in ESTABLISHED: "any outstanding RECEIVEs and SEND should
#    receive 'reset' responses"). Python's documentation:
#    ``ConnectionResetError`` ("Corresponds to errno ECONNRESET"),
#    ``http.client.HTTPConnection.getresponse``,
#    ``asyncio.StreamReader.readuntil``.
