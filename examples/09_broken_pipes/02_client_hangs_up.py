"""
The client hangs up mid-reply
=============================

A server writing to a client that has gone sees its ``send()`` calls
succeed, then fail with ``ECONNRESET`` (``ConnectionResetError``) or with
``EPIPE`` (``BrokenPipeError``). Which one depends on how the client left: a
client that closes with data still unread resets the connection at once,
and the server's next ``send()`` reports the reset; a client that had read
everything sends a FIN, the server's next ``send()`` is accepted, the
client's kernel answers that data with an RST, and the ``send()`` after it
fails with ``EPIPE``.
"""

# %%
# The client leaves with data unread
# ----------------------------------
# The server writes without blocking until both kernels' buffers are full
# (small buffers, 4096 bytes, so that a few packets fill them), counting the
# bytes its ``send()`` calls accepted; the client reads nothing. When the
# client's kernel advertises a window of 0, the client closes. The server
# then tries to send twice more. ``lab.wait_packet`` and ``lab.wait_state``
# wait for the reset to arrive before each step, so the run does not depend
# on timing.
import contextlib
import socket

import socklab

PORT = 4321
CHUNK = b"x" * 1000
ACCEPTED = "bytes the server's send() calls accepted"


def small_buffers_pair():
    """Listener on 127.0.0.1:4321, client, accepted server socket, with 4096-byte buffers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the accepted socket inherits it
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def unread_data(lab):
    listener, client, server = small_buffers_pair()
    server.setblocking(False)
    accepted = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            accepted += server.send(CHUNK)
    lab.record(ACCEPTED, accepted)
    lab.call(server.send, CHUNK, label="send, buffers full")
    lab.wait_packet(".", sport=50000, win=0)  # the client's kernel shuts its window
    lab.snapshot("the client's window shut")

    lab.call(client.close, label="close(), data unread")
    lab.wait_packet("R.", sport=50000)
    lab.wait_state(server, None)  # the server's kernel took the reset in
    lab.snapshot("after the client's close")
    lab.call(server.send, CHUNK, label="send #1 after the reset")
    lab.call(server.send, CHUNK, label="send #2 after the reset")


unread = socklab.run(unread_data)
before_reset = unread.states_at("the client's window shut")

# %%
# Before the close, the client's ``Recv-Q`` holds what reached it and the
# server's ``Send-Q`` what its kernel could not send yet. The client's
# ``close()`` with unread bytes sends an RST instead of a FIN, and both
# sockets are gone from the table.
socklab.show(unread.states())

# %%
# The server's calls: its buffers full (``EAGAIN``: a non-blocking socket
# with no room), then, after the reset, ``ECONNRESET``, the error the reset
# left on the socket, which one call reports; the call after that fails with
# ``EPIPE``, the error for a socket that can no longer send. Python raises
# them as ``ConnectionResetError`` and ``BrokenPipeError``. (No ``SIGPIPE``
# comes with the ``EPIPE``: Python ignores that signal.)
socklab.show(unread.results())
print(f"the server's send() calls accepted {unread.value(ACCEPTED)} bytes; {before_reset['client'].recv_q} "
      f"reached the client, {before_reset['server'].send_q} were still in the server's Send-Q")

# %%
# The trace: the server's data, the client's ACKs down to ``win 0``, and the
# client's ``[R.]``. Nothing the server sent after that left its kernel.
socklab.show(unread.trace())

# %%
# The client had read everything
# ------------------------------
# The same hang-up from a client that read the whole reply before closing:
# its ``close()`` sends a FIN. The server sends again.


def all_read(lab):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.call(server.send, CHUNK, label="send #1")
    lab.call(client.recv, 4096, label="recv")
    lab.call(client.close, label="close(), all read")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("after the client's close")

    lab.call(server.send, CHUNK, label="send #2")
    lab.wait_packet("R", sport=50000)  # the client's kernel answers the data with a reset
    lab.wait_state(server, None)
    lab.snapshot("after the reset")
    lab.call(server.send, CHUNK, label="send #3")


read = socklab.run(all_read)

# %%
# After the client's FIN the server is in ``CLOSE-WAIT``, and its second
# ``send()`` is accepted: 1000 bytes, as if the client were still there. Its
# kernel cannot know better: a FIN only says the client will send no more.
# Those 1000 bytes reach the client's kernel, which has no reader for them
# and answers with ``[R]``; the third ``send()`` then fails with ``EPIPE``,
# not ``ECONNRESET``: the kernel reports a reset that arrives in
# ``CLOSE-WAIT`` as ``EPIPE``. On loopback the reset is back within a
# millisecond of the data (the trace's times); across a network, every
# ``send()`` made before the reset gets back, a round trip after the data,
# would be accepted in the same way, and its bytes lost.
socklab.show(read.states(), read.results())
socklab.show(read.trace())

# %%
# The same run as a ladder: the client's ``FIN-ACK``, the server's data
# after it, and the red reset.
socklab.show(read.ladder())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
GONE = {"client": None, "server": None}
unread.expect(
    calls={"server: send, buffers full": "EAGAIN", "client: close(), data unread": None,
           "server: send #1 after the reset": "ECONNRESET", "server: send #2 after the reset": "EPIPE"},
    states={"the client's window shut": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
            "after the client's close": GONE},
)
with unread.claim("the server's data, the client's zero window, then the client's reset"):
    flow = unread.flow()
    senders = [f.split()[0] for f, p in zip(flow, unread.packets, strict=True) if p.length]
    assert flow[:3] == HANDSHAKE and flow[-1] == "client [R.]" and flow[-2] == "client [.]", flow
    assert unread.packets[-2].win == 0 and set(senders) == {"server"}, senders
with unread.claim("the client's Recv-Q held what reached it"):
    assert before_reset["client"].recv_q == sum(p.length for p in unread.packets if p.length) > 0
assert before_reset["server"].send_q > 0, "the page says the server still had bytes to send"
assert unread.value(ACCEPTED) == (
    before_reset["client"].recv_q + before_reset["server"].send_q), (
    "the page says the accepted bytes are in the client's Recv-Q or the server's Send-Q")
read.expect(
    calls={"server: send #1": 1000, "client: recv": CHUNK, "client: close(), all read": None,
           "server: send #2": 1000, "server: send #3": "EPIPE"},
    flow=HANDSHAKE + ["server [P.]", "client [.]", "client [F.]", "server [.]", "server [P.]", "client [R]"],
    states={"after the client's close": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)},
            "after the reset": GONE},
)
with read.claim("on loopback the reset comes back within a millisecond of the data"):
    assert read.packets[-1].time_ns - read.packets[-2].time_ns < 1_000_000
unread.summarize(closer="client: close(), data unread",
                 sends=["server: send #1 after the reset", "server: send #2 after the reset"])
read.summarize(closer="client: close(), all read", sends=["server: send #2", "server: send #3"])
socklab.show(unread.about())

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
# * ``TCP_TIMEWAIT_SOCKET``: a socket its program had closed, kept by the
#   kernel as a small timewait socket, answered data nobody would read.
#
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
unread.expect(resets=[('client', 'TCP_ABORT_ON_CLOSE')])
read.expect(resets=[('client', 'TCP_TIMEWAIT_SOCKET')])
socklab.show(unread.events())

# %%
# .. admonition:: References
#
#    ``send(2)`` (``EAGAIN``: "The socket is marked nonblocking and the
#    requested operation would block"; ``ECONNRESET``: "Connection reset by
#    peer"; ``EPIPE``: "The local end has been shut down on a connection
#    oriented socket"); ``socket(7)`` (``SO_RCVBUF``, ``SO_SNDBUF``);
#    Python's exception hierarchy: ``ConnectionResetError`` ("Corresponds to
#    errno ECONNRESET"), ``BrokenPipeError`` ("Corresponds to errno EPIPE and
#    ESHUTDOWN"); RFC 9293 section 3.6.1 (a host that closes with received
#    data pending "SHOULD send a RST to show that data was lost"; and "if new
#    data is received after CLOSE is called, its TCP implementation SHOULD send
#    a RST", the rule behind the ``TCP_TIMEWAIT_SOCKET`` reset).
