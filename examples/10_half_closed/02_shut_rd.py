"""
shutdown(SHUT_RD) on Linux
==========================

``shutdown(SHUT_RD)`` sends nothing: the peer is not told, and may go on
sending. On Linux it throws nothing away either. Data already queued is
still returned by ``recv()``, data arriving afterwards is accepted,
acknowledged and returned too; what changes is that ``recv()`` on an empty
queue returns ``b''`` at once instead of waiting. Sending still works. And
whatever is left unread when the socket is closed turns its FIN into an RST,
as for any close with unread data.
"""

# %%
# The scenario
# ------------
# The client sends ``b"first"``; the server calls ``shutdown(SHUT_RD)``, asks
# ``poll()`` what it sees and reads until ``b''``. The client sends
# ``b"second"``, which the server reads as well. The server replies; the
# client sends ``b"third"``, which the server never reads, and the server
# closes. Each step waits for the ACK of the data it depends on, so the
# trace does not depend on timing.
import select
import socket

import socklab

PORT = 4321


def connected_pair():
    """A listener on 127.0.0.1:4321, a client, the accepted server socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def shut_rd(lab):
    listener, client, server = connected_pair()
    lab.call(client.send, b"first", label="send first")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs it: it is queued

    lab.call(server.shutdown, socket.SHUT_RD, label="shutdown(SHUT_RD)")
    lab.snapshot("after shutdown(SHUT_RD)")
    lab.wait_poll(server, select.POLLIN | select.POLLRDHUP, timeout=0, label="poll(), timeout 0")
    lab.call(server.recv, 100, label="recv #1")
    lab.call(server.recv, 100, label="recv #2")  # an empty queue: no wait

    lab.call(client.send, b"second", label="send second")
    lab.wait_packet(".", sport=PORT, after=1)  # accepted and acknowledged all the same
    lab.snapshot("data after shutdown(SHUT_RD)")
    lab.call(server.recv, 100, label="recv #3")
    lab.call(server.recv, 100, label="recv #4")

    lab.call(server.send, b"reply", label="send reply")
    lab.call(client.recv, 100, label="recv reply")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the reply

    lab.call(client.send, b"third", label="send third")
    lab.wait_packet(".", sport=PORT, after=2)
    lab.snapshot("unread at close")
    lab.call(server.close, label="close()")
    lab.wait_packet("R.", sport=PORT)
    lab.wait_state(client, None)
    lab.call(client.recv, 100, label="recv after close")


run = socklab.run(shut_rd)

# %%
# Socket states
# -------------
# After ``shutdown(SHUT_RD)`` the server is still ``ESTAB``, ``Recv-Q`` 5:
# the queued ``first`` is still there, and there is no state for a socket
# that shut its receiving side. After ``second`` arrives, ``Recv-Q`` is 6:
# the kernel queued it. At the server's close, ``Recv-Q`` 5 (``third``).
socklab.show(run.states())

# %%
# Call results
# ------------
# ``poll()`` reports ``POLLIN`` and ``POLLRDHUP`` at once, as if the peer
# had closed: the socket's own shutdown looks the same to ``poll()``.
# ``recv #1`` still returns the queued ``b'first'``, and ``recv #2`` returns
# ``b''`` at once, on an empty queue where it would otherwise wait. Yet
# ``recv #3`` returns ``b'second'``, which arrived after the shutdown: on
# Linux ``SHUT_RD`` only turns "wait for data" into "end of file". The
# server's reply goes out as usual. After the server's close with ``third``
# unread, the client's ``recv()`` fails with ``ECONNRESET``.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# No packet follows ``shutdown(SHUT_RD)``: the client's ``second`` simply
# comes and is acknowledged. The close sends ``[R.]``, not ``[F.]``.
socklab.show(run.trace())

# %%
# The ladder. Nothing leaves the server between the ACK of ``first`` and
# the ACK of ``second``: the shutdown is invisible to the peer.
socklab.show(run.ladder())

# %%
# The kernel's account
# --------------------
# As root: no state change at the shutdown (the server stays
# ``TCP_ESTABLISHED`` until it closes), and the reset's reason is
# ``TCP_ABORT_ON_CLOSE``, "closed with unread data": the shutdown did not
# make the kernel discard ``third``, so ``close()`` found it unread. The
# counter ``TcpExtTCPAbortOnClose`` moved by one.
socklab.show(run.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={"server: shutdown(SHUT_RD)": None, "server: poll(), timeout 0": "POLLIN|POLLRDHUP",
           "server: recv #1": b"first", "server: recv #2": b"",
           "client: send second": 6, "server: recv #3": b"second", "server: recv #4": b"",
           "server: send reply": 5, "client: recv reply": b"reply",
           "client: send third": 5, "client: recv after close": "ECONNRESET"},
    flow=["client [S]", "server [S.]", "client [.]",
          "client [P.]", "server [.]",  # first
          "client [P.]", "server [.]",  # second, after the shutdown: nothing in between
          "server [P.]", "client [.]",  # the reply
          "client [P.]", "server [.]",  # third, never read
          "server [R.]"],
    states={
        "after shutdown(SHUT_RD)": {"server": ("ESTAB", 5)},
        "data after shutdown(SHUT_RD)": {"server": ("ESTAB", 6)},
        "unread at close": {"server": ("ESTAB", 5)},
    },
    resets=[("server", "TCP_ABORT_ON_CLOSE")],
    transitions={"server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE"]},
    counters={"TcpExtTCPAbortOnClose": 1},
)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``shutdown(2)`` ("If how is SHUT_RD, further receptions will be
#    disallowed": the text does not say what happens to data that arrives);
#    ``recv(2)`` (a return value of 0); ``poll(2)`` (``POLLRDHUP``); POSIX
#    ``shutdown()`` ("Disables further receive operations"). In the kernel,
#    ``tcp_shutdown()`` acts only on ``SEND_SHUTDOWN``: ``SHUT_RD`` sets
#    ``RCV_SHUTDOWN``, which ``tcp_recvmsg()`` checks only once the queue is
#    empty. ``include/net/rstreason.h`` (``TCP_ABORT_ON_CLOSE``).
