"""
Client gave up before the response
==================================

The server side this time. A client sends its request, then gives up
waiting and closes; the server writes its response anyway. The kernel's
side is the seed's story: the client's FIN arrived, so the first write is
accepted, the client's kernel answers it with an RST, and the next write
fails with ``EPIPE``. A raw socket's ``send()`` fails; a
``socketserver`` handler's ``wfile.write()`` raises ``BrokenPipeError``,
which ``socketserver`` catches and prints, and goes on serving; an
asyncio stream's ``write()`` raises nothing, and its ``drain()`` raises
``BrokenPipeError``. Three runs, one per server, each checked to have put
the same packets on the wire.
"""

# %%
# The scenario
# ------------
# The client is a plain socket in every run. It sends its request and, while
# the server is busy with it, closes; the scenario waits until the server's
# kernel has acknowledged the client's FIN (the server is in ``CLOSE-WAIT``).
# The server writes the response's head, the scenario waits for the client's
# RST and for the server's kernel to take it in, and the server writes the
# body. The servers: a raw socket; a ``socketserver.TCPServer`` with a
# ``StreamRequestHandler``, serving one request with ``handle_request()``;
# an asyncio stream on the accepted socket (what ``asyncio.start_server``
# hands its callback). ``socketserver`` catches what a handler raises and
# passes it to ``handle_error()``; this server's ``handle_error()`` keeps what
# the default one prints, and records the exception it got.
import asyncio
import contextlib
import io
import socket
import socketserver
import sys

import socklab

PORT = 4321
REQUEST = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
BODY = b"ok"


def client_gives_up(lab, client, server):
    """The request has been read; the client closes, and the server's kernel ACKs its FIN."""
    lab.call(client.close, label="close(), gave up")
    lab.wait_packet(".", sport=PORT, after=1)  # the server's kernel ACKs the FIN (its 1st [.] ACKed the request)
    lab.wait_state(server, "CLOSE_WAIT")
    lab.snapshot("after the client's close")


def wait_reset(lab, server):
    lab.wait_packet("R", dport=PORT)  # the client's kernel answers the head with a reset
    lab.wait_state(server, None)  # ... which the server's kernel took in
    lab.snapshot("after the reset")


def raw_socket(lab):
    listener = socket.create_server(("127.0.0.1", PORT))
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    client.send(REQUEST)
    lab.wait_packet(".", sport=PORT)
    server.recv(1024)
    client_gives_up(lab, client, server)
    lab.call(server.send, HEAD, label="send(head)")
    wait_reset(lab, server)
    lab.call(server.send, BODY, label="send(body)")


def with_socketserver(lab):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            lab.wait_packet(".", sport=PORT)
            self.rfile.readline()
            client_gives_up(lab, client, self.connection)
            lab.call(self.wfile.write, HEAD, label="wfile.write(head)", on=self.connection)
            wait_reset(lab, self.connection)
            self.wfile.write(BODY)  # not through lab.call: what it raises goes to socketserver

    class Server(socketserver.TCPServer):
        allow_reuse_address = True

        def handle_error(self, request, client_address):
            caught = sys.exc_info()[1]
            printed = io.StringIO()
            with contextlib.redirect_stderr(printed):
                super().handle_error(request, client_address)  # the default: print the traceback
            lines = printed.getvalue().splitlines()
            lab.record("handle_error() printed", [lines[1], "...", lines[-2]])

            def raise_it():
                raise caught

            lab.call(raise_it, label="handle_error() got", on=request)

    server = Server(("127.0.0.1", PORT), Handler)
    client = socket.create_connection(("127.0.0.1", PORT))
    client.send(REQUEST)
    lab.call(server.handle_request, label="handle_request()", on=server.socket)
    server.server_close()


def with_asyncio_streams(lab):
    listener = socket.create_server(("127.0.0.1", PORT))
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    loop = asyncio.new_event_loop()
    reader, writer = loop.run_until_complete(asyncio.open_connection(sock=server))
    client.send(REQUEST)
    lab.wait_packet(".", sport=PORT)
    loop.run_until_complete(reader.readuntil(b"\r\n\r\n"))
    client_gives_up(lab, client, server)
    lab.call(writer.write, HEAD, label="write(head)", on=server)
    lab.call(loop.run_until_complete, writer.drain(), label="await drain() #1", on=server)
    wait_reset(lab, server)
    lab.call(writer.write, BODY, label="write(body)", on=server)
    lab.call(loop.run_until_complete, writer.drain(), label="await drain() #2", on=server)
    loop.close()


raw = socklab.run(raw_socket)
framework = socklab.run(with_socketserver)
streams = socklab.run(with_asyncio_streams)

# %%
# What each server was told
# -------------------------
# The body's write, in each program's words, read from the three runs. The
# raw ``send()`` fails with ``EPIPE``: a reset taken in ``CLOSE-WAIT`` is
# reported as ``EPIPE``, not ``ECONNRESET``. ``socketserver``'s
# ``wfile.write()`` raises the same ``BrokenPipeError``, but
# ``handle_request()`` returns ``None``: the exception went to
# ``handle_error()``, whose default prints the traceback between two lines of
# dashes and carries on (the lines it printed are below). asyncio's
# ``write()`` returns ``None`` and keeps the error; the ``drain()`` after it
# raises it.
ANSWERS = {"raw socket": (raw, "server: send(body)"),
           "socketserver": (framework, "server: handle_error() got"),
           "asyncio streams": (streams, "server: await drain() #2")}
for server_kind, (one_run, key) in ANSWERS.items():
    answer = one_run.call(key)
    said = f"raised {answer.exception}: {answer.message}" if answer.failed else f"returned {answer.returned}"
    print(f"{server_kind:16} {answer.label:20} {said}")
print("socketserver printed:", *framework.value("handle_error() printed"), sep="\n  ")

# %%
# Socket states
# -------------
# The same in every run; here ``socketserver``'s. After the client's close,
# the server's socket is in ``CLOSE-WAIT`` and the client's, which no
# program holds any more, in ``FIN-WAIT-2``. After the reset both are gone.
socklab.show(framework.states())

# %%
# Call results
# ------------
# Each run's calls. The head's write succeeds everywhere, after the
# client's FIN: a FIN only says the client will send nothing more.
socklab.show(raw.results(), framework.results(), streams.results())

# %%
# Packet trace
# ------------
# The ``socketserver`` run: the request and its ``[.]``, the client's
# ``[F.]`` and its ``[.]``, the head ``[P.]``, and the client's ``[R]``. The
# body never leaves the server. The claims below check that the three runs
# put the same flags on the wire in the same order.
socklab.show(framework.trace())
socklab.show(framework.ladder())

# %%
# The kernel's account
# --------------------
# The kernel's own events of the asyncio run (as root). The client's socket
# goes ``TCP_FIN_WAIT1``, ``TCP_FIN_WAIT2``, then is swapped for a timewait
# mini-socket (``TCP_FIN_WAIT2`` -> ``TCP_CLOSE``), which sends the RST with
# the reason ``TCP_TIMEWAIT_SOCKET``. The server's socket takes the reset in
# ``TCP_CLOSE_WAIT``: that is why every server is told ``EPIPE``.
socklab.show(streams.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel or a library does anything
# else, the build fails here and says which claim broke.
FLOW = ["client [S]", "server [S.]", "client [.]", "client [P.]", "server [.]",
        "client [F.]", "server [.]", "server [P.]", "client [R]"]
STATES = {"after the client's close": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
          "after the reset": {"client": None, "server": None}}
raw.expect(calls={"server: send(head)": len(HEAD), "server: send(body)": "EPIPE"}, flow=FLOW, states=STATES)
framework.expect(calls={"server: wfile.write(head)": len(HEAD), "server: handle_error() got": "EPIPE",
                        "listener: handle_request()": None},
                 flow=FLOW, states=STATES)
streams.expect(calls={"server: write(head)": None, "server: await drain() #1": None, "server: write(body)": None,
                      "server: await drain() #2": "EPIPE"},
               flow=FLOW, states=STATES)
for one_run, key in ANSWERS.values():
    assert (one_run.call(key).exception, one_run.call(key).message) == ("BrokenPipeError", "[Errno 32] Broken pipe")
printed = framework.value("handle_error() printed")
assert printed[0].startswith("Exception occurred during processing of request from ('127.0.0.1', "), printed
assert printed[-1] == "BrokenPipeError: [Errno 32] Broken pipe", printed
socklab.show(framework.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``), and the states the server's socket went
# through. Recorded as root only: elsewhere these claims are reported as
# unchecked.
#
# * ``TCP_TIMEWAIT_SOCKET``: a socket its program had closed, kept by the
#   kernel as a small timewait socket, answered data nobody would read.
for one_run in (raw, framework, streams):
    one_run.expect(resets=[("client", "TCP_TIMEWAIT_SOCKET")],
                   transitions={"server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"]})

# %%
# .. admonition:: References
#
#    Python's documentation: ``socketserver.BaseServer.handle_error`` ("This
#    function is called if the handle() method of a RequestHandlerClass
#    instance raises an exception. The default action is to print the
#    traceback to standard error and continue handling further requests"),
#    ``BrokenPipeError`` ("trying to write on a pipe while the other end has
#    been closed, or trying to write on a socket which has been shutdown for
#    writing"), ``asyncio.StreamWriter.drain``. ``send(2)`` (``EPIPE``: "The
#    local end has been shut down on a connection oriented socket");
#    RFC 9293 section 3.6.1 (new data received after CLOSE: a reset SHOULD be
#    sent).
