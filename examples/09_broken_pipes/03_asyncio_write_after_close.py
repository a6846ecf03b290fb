"""
asyncio writes that do not raise
================================

With asyncio streams, ``writer.write()`` never raises for a connection the
peer has closed or reset: it hands the bytes to the transport and returns,
and the error surfaces later, from ``await writer.drain()`` or
``await reader.read()``, or not at all. What this Python version raises, and
when, is below, for a peer that closes (FIN) and a peer that resets (RST).
"""

# %%
# The scenario
# ------------
# The server is a plain socket; the client is an asyncio stream
# (``asyncio.open_connection(sock=...)``) on a connected socket, so that the
# lab can wait for its states. Each ``await`` is one step of the event loop,
# ``loop.run_until_complete``, recorded with what it returned or the
# exception it raised, with its message (``lab.call(..., on=client)`` names
# the socket the stream works on). Between steps the loop does not run:
# ``lab.wait_packet`` and ``lab.wait_state`` wait for the kernel, so the runs
# do not depend on timing.
import asyncio
import socket
import struct
import sys

import socklab

PORT = 4321
LINGER_ZERO = struct.pack("ii", 1, 0)


def connected_pair():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def peer_closes(lab):
    listener, client, server = connected_pair()
    loop = asyncio.new_event_loop()
    reader, writer = loop.run_until_complete(asyncio.open_connection(sock=client))
    lab.call(server.close, label="close()")
    lab.wait_state(client, "CLOSE_WAIT")  # the FIN has arrived
    lab.wait_packet(".", sport=50000, after=1)  # ... and the client's kernel has ACKed it (a delayed ACK)
    lab.call(loop.run_until_complete, reader.read(100), label="await reader.read(100)", on=client, by="client")

    lab.call(writer.write, b"request", label="writer.write() #1", on=client, by="client")
    lab.wait_packet("R", sport=PORT)  # the server's kernel answers the bytes with a reset
    lab.wait_state(client, None)
    lab.call(loop.run_until_complete, writer.drain(), label="await writer.drain() #1", on=client, by="client")
    lab.snapshot("after the reset")
    lab.call(writer.write, b"request", label="writer.write() #2", on=client, by="client")
    lab.call(loop.run_until_complete, writer.drain(), label="await writer.drain() #2", on=client, by="client")
    lab.call(loop.run_until_complete, reader.read(100), label="await reader.read(100) again", on=client, by="client")
    lab.call(writer.write, b"request", label="writer.write() #3", on=client, by="client")
    loop.close()


closed = socklab.run(peer_closes)

# %%
# The peer closes
# ---------------
# The server calls ``close()``; its FIN puts the client in ``CLOSE-WAIT``, and
# ``reader.read()`` returns ``b''``: the stream's end of file (the protocol's
# ``eof_received``). The client writes anyway. ``writer.write()`` returns
# ``None``; the bytes go out, and the server's kernel, whose socket is
# closed, answers with an RST, which ends the client's socket in the kernel
# (no TCP row is left in the table; the two Unix rows are the event loop's
# own socket pair, which it uses to wake itself). The first ``drain()``
# returns ``None``: the transport sent the bytes and has heard of no error,
# because after the end of file asyncio stops reading the socket, and the
# reset is only found by the next write. That second ``write()`` returns
# ``None`` too; it is the ``drain()`` after it that raises the kernel's
# error, ``BrokenPipeError`` (``EPIPE``: a reset that arrives in
# ``CLOSE-WAIT`` is reported as ``EPIPE``; see
# :ref:`the hang-up page <sphx_glr_auto_examples_09_broken_pipes_02_client_hangs_up.py>`).
# A ``read()`` after that raises the same error, not ``b''`` again, and a
# third ``write()`` still returns ``None``: writes to a lost connection are
# dropped silently.
socklab.show(closed.states(), closed.results())
for failed in (c for c in closed.calls if c.failed):
    print(f"{failed.label} raised {failed.exception}: {failed.message}")
socklab.show(closed.trace())

# %%
# As a ladder: the server's ``FIN-ACK``, the client's ``ACK``, the client's
# request, and the red reset that answered it: the last packet of the run.
# Everything the client's asyncio calls did after it happened inside the
# client's process, without a packet.
socklab.show(closed.ladder())

# %%
# The peer resets
# ---------------
# The server closes with ``SO_LINGER {1, 0}``: an RST instead of a FIN. The
# client first writes, then drains, then reads.


def peer_resets(lab):
    listener, client, server = connected_pair()
    loop = asyncio.new_event_loop()
    reader, writer = loop.run_until_complete(asyncio.open_connection(sock=client))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(server.close, label="close(), linger 0")
    lab.wait_packet("R.", sport=PORT)
    lab.wait_state(client, None)  # the client's kernel took the reset in
    lab.snapshot("after the reset")

    lab.call(writer.write, b"request", label="writer.write() #1", on=client, by="client")
    lab.call(loop.run_until_complete, writer.drain(), label="await writer.drain() #1", on=client, by="client")
    lab.call(loop.run_until_complete, reader.read(100), label="await reader.read(100)", on=client, by="client")
    lab.call(writer.write, b"request", label="writer.write() #2", on=client, by="client")
    lab.call(loop.run_until_complete, writer.drain(), label="await writer.drain() #2", on=client, by="client")
    loop.close()


reset = socklab.run(peer_resets)

# %%
# The reset has already ended the client's socket in the kernel when the
# client writes. ``writer.write()`` still returns ``None``: the transport
# tried to send at once, the kernel refused with ``ECONNRESET``, and the
# transport kept the error for later. ``drain()`` raises it,
# ``ConnectionResetError: [Errno 104] Connection reset by peer``, and so
# does the next ``read()``. The second ``write()`` returns ``None``, and its
# ``drain()`` raises the same error once more. No packet leaves the client
# after the reset.
socklab.show(reset.results())
for failed in (c for c in reset.calls if c.failed):
    print(f"{failed.label} raised {failed.exception}: {failed.message}")
socklab.show(reset.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel or asyncio does anything
# else, the build fails here and says which claim broke. The exceptions are
# this Python's (its version is printed below); another version may raise at
# another step.
PIPE, RESET_BY_PEER = "EPIPE", "ECONNRESET"
EXCEPTIONS = {PIPE: ("BrokenPipeError", "[Errno 32] Broken pipe"),
              RESET_BY_PEER: ("ConnectionResetError", "[Errno 104] Connection reset by peer")}
HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
closed.expect(
    calls={"server: close()": None,
           "client: await reader.read(100)": b"",
           "client: writer.write() #1": None,
           "client: await writer.drain() #1": None,
           "client: writer.write() #2": None,
           "client: await writer.drain() #2": PIPE,
           "client: await reader.read(100) again": PIPE,
           "client: writer.write() #3": None},
    flow=HANDSHAKE + ["server [F.]", "client [.]", "client [P.]", "server [R]"],
    states={"after the reset": {"client": None, "server": None}},
)
reset.expect(
    calls={"server: close(), linger 0": None,
           "client: writer.write() #1": None,
           "client: await writer.drain() #1": RESET_BY_PEER,
           "client: await reader.read(100)": RESET_BY_PEER,
           "client: writer.write() #2": None,
           "client: await writer.drain() #2": RESET_BY_PEER},
    flow=HANDSHAKE + ["server [R.]"],
    states={"after the reset": {"client": None, "server": None}},
)
for failed in (c for one_run in (closed, reset) for c in one_run.calls if c.failed):
    assert (failed.exception, failed.message) == EXCEPTIONS[failed.errno], failed
print(f"these runs: Python {sys.version.split()[0]}")
socklab.show(closed.about())

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
# * ``TCP_STATE``: the connection was aborted by the socket's own state change
#   (``close()`` with ``SO_LINGER {1, 0}``, or a listener closing with
#   connections in its queue), not by unread data.
#
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
closed.expect(resets=[('server', 'TCP_TIMEWAIT_SOCKET')])
reset.expect(resets=[('server', 'TCP_STATE')])
socklab.show(closed.events())

# %%
# .. admonition:: References
#
#    Python's asyncio documentation: ``StreamWriter.write`` ("The method
#    attempts to write the data to the underlying socket immediately. If that
#    fails, the data is queued in an internal write buffer until it can be
#    sent. The method should be used along with the drain() method"),
#    ``StreamWriter.drain`` ("Wait until it is appropriate to resume writing
#    to the stream"), ``Protocol.eof_received``; python/asyncio issue 301
#    (write errors are not raised by ``write()``); ``send(2)`` (``EPIPE``,
#    ``ECONNRESET``); ``socket(7)`` (``SO_LINGER``).
