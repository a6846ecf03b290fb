"""
shutdown() before close()
=========================

A reader asked what changes if the client calls ``shutdown()`` before
``close()``. With ``shutdown(SHUT_RDWR)`` then ``close()``, nothing that the
server or the wire can see: the FIN leaves at ``shutdown()`` instead of
``close()``, the server's first ``send()`` still draws an RST, and its
second still fails with ``EPIPE``. What avoids the RST is
``shutdown(SHUT_WR)``, then reading until ``b''``, then ``close()``.
"""

# %%
# Plain close()
# -------------
# The reference: the seed's central program (the page
# :ref:`sphx_glr_auto_examples_02_close_01_close_then_send.py` shows it in
# full). The client closes; the server sends twice: 1, then ``EPIPE``.
import socket

import socklab

PORT = 4321


def connected_pair():
    """The seed's set-up: listener on 127.0.0.1:4321, client, accepted server socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def plain_close(lab):
    listener, client, server = connected_pair()
    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel took the ACK in

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R")  # the client's kernel answers with a reset
    lab.wait_state(server, None)  # ... and the server's kernel took it in
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")


run_close = socklab.run(plain_close)
socklab.show(run_close.results())

# %%
# The packets: the client's ``[F.]`` and the server's ``[.]``, then the
# server's byte ``[P.]`` and the client's ``[R]``.
socklab.show(run_close.trace())

# %%
# shutdown(SHUT_RDWR), then close()
# ---------------------------------
# The reader's variant: the client shuts down both directions first, and
# closes afterwards. A snapshot before the shutdown and after each of the
# two calls.


def shutdown_then_close(lab):
    listener, client, server = connected_pair()
    lab.snapshot("before shutdown on client")
    lab.call(client.shutdown, socket.SHUT_RDWR, label="shutdown(SHUT_RDWR)")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel took the ACK in
    lab.snapshot("after shutdown on client")
    lab.call(client.close, label="close()")
    lab.snapshot("after close on client")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R")
    lab.wait_state(client, None)
    lab.wait_state(server, None)  # the server's kernel took the reset in
    lab.snapshot("after send on server")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")


run_shutdown = socklab.run(shutdown_then_close)

# %%
# ``shutdown()`` already moves the client to ``FIN-WAIT-2`` and the server to
# ``CLOSE-WAIT``; in the table, ``close()`` changes neither state, only the
# ``Timer`` column: once the program has let go of the socket, the kernel
# gives the client's ``FIN-WAIT-2`` a 60-second limit (``tcp_fin_timeout``;
# ``ss`` names the timer ``timewait``). Underneath, ``close()`` did more: the
# kernel moved the program's socket to ``CLOSE`` and left a small timewait
# socket in its place, which ``ss`` lists in ``FIN-WAIT-2`` (with
# ``tcp_fin_timeout`` at 60 s or less, the default). That socket is the one
# that answers the server's byte: the kernel's reason for the reset, checked at
# the end of the page, is ``TCP_TIMEWAIT_SOCKET``. After the server's send,
# both are gone, as with a plain ``close()``.
socklab.show(run_shutdown.states())

# %%
# The same outcomes as with ``close()`` alone: 1, then ``EPIPE``.
socklab.show(run_shutdown.results())

# %%
# The same packets, in the same order: the FIN simply left one call earlier.
# The server cannot tell the two clients apart.
socklab.show(run_shutdown.trace())

# %%
# The ladder diagram of this run, time flowing down. The blue ``FIN-ACK``
# leaves at the client's ``shutdown()``, and the ``FIN-WAIT-2`` and
# ``CLOSE-WAIT`` boxes follow it. The client's ``close()`` comes later: no
# arrow and no new box, since the state the tables show did not change (the
# ``Timer`` column did, and the kernel swapped the socket for a timewait
# socket in ``FIN-WAIT-2``). The red
# ``RST`` that answers the server's byte is where the
# :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`
# has it.
socklab.show(run_shutdown.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this run: the paths of the
# :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`,
# step for step. The states are the ones the tables show: both
# ``ESTABLISHED``; the client in ``FIN-WAIT-2`` and the server in
# ``CLOSE-WAIT`` after the shutdown, and still after the client's
# ``close()``; then neither in the table (``CLOSED``). The figure's
# ``close()`` arrow is the RFC's CLOSE call, "I have no more data to send"
# (section 3.6): here ``shutdown()`` made it, with its FIN, and the
# program's ``close()`` afterwards is no arrow at all, since the RFC state
# stays ``FIN-WAIT-2`` (Linux keeps it in a timewait socket). Between the
# first two snapshots the client passed through ``FIN-WAIT-1``, too brief for a snapshot: it lasts from the client's FIN
# until the server's ACK of it. The last step leaves the figure (dashed):
# the client answers the server's byte with a reset (``rcv data after
# close()``), and the server's ``CLOSE-WAIT`` ends on that reset (``rcv
# RST``). The next run shows that ``shutdown(SHUT_RDWR)`` alone, without
# ``close()``, draws a reset too, for another reason. The ``run.expect`` in this cell checks
# those states, the data and the reset against the run.
CLIENT_PATH = ["ESTABLISHED", "FIN_WAIT2", "rcv data after close()"]
SERVER_PATH = ["ESTABLISHED", "CLOSE_WAIT", "rcv RST"]
run_shutdown.expect(
    states={
        "before shutdown on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after shutdown on client": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after close on client": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after send on server": {"client": None, "server": None},
    },
    packets={5: {"flags": "P."}, 6: {"flags": "R"}},  # the data, then the reset it drew
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# shutdown(SHUT_RDWR) without close()
# -----------------------------------
# The wire is the same, but the kernel names two different causes. After
# ``close()`` the kernel has replaced the socket with a timewait socket, and
# that answers the data (``TCP_TIMEWAIT_SOCKET``). Without ``close()``, the
# open socket that will not read resets the connection itself
# (``TCP_ABORT_ON_DATA``, and the namespace's ``TCPAbortOnData`` counter moves
# by one). RFC 2525 section 2.17: when an application closes a connection "in
# such a way that it can no longer read any received data", its TCP SHOULD
# answer new data with an RST. Here the client shuts down both directions and
# keeps its socket open.


def shutdown_without_close(lab):
    listener, client, server = connected_pair()
    lab.call(client.shutdown, socket.SHUT_RDWR, label="shutdown(SHUT_RDWR)")
    lab.wait_packet(".", sport=PORT)
    lab.wait_state(client, "FIN_WAIT2")  # the client's kernel took the ACK in

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R")
    lab.wait_state(server, None)  # the server's kernel took the reset in
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")
    lab.call(client.recv, 100, label="recv")


run_no_close = socklab.run(shutdown_without_close)

# %%
# Still 1, then ``EPIPE``. The client's own socket, still open, was reset
# as well, by its own kernel: no RST reached it (it sent the only one), but
# the kernel ran its reset routine on it in ``FIN_WAIT2`` before answering the
# byte, so its ``recv()`` fails with ``ECONNRESET``.
socklab.show(run_no_close.results())

# %%
# The same packets as with ``close()``: the server's byte draws the
# client's ``[R]``. With only the write side shut down (the seed's
# ``shutdown(SHUT_WR)``, and the last section below), the client's kernel
# accepts the server's data and acknowledges it instead.
socklab.show(run_no_close.trace())

# %%
# shutdown(SHUT_WR), read to the end, then close()
# ------------------------------------------------
# What a ``shutdown()`` before ``close()`` is good for: the client sends its
# FIN with ``shutdown(SHUT_WR)`` and keeps reading until ``recv()`` returns
# ``b''``. The server, seeing the end of the request (``b''``), sends the
# rest of its answer and closes; only then does the client close.


def shutdown_write_read_then_close(lab):
    listener, client, server = connected_pair()
    lab.call(client.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN

    lab.call(server.recv, 100, label="recv")
    lab.call(server.send, b"bye", socket.MSG_NOSIGNAL, label="send")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the 3 bytes
    lab.snapshot("after send on server")
    lab.call(server.close, label="close()")
    lab.wait_packet(".", dport=PORT, after=2)  # ... and the server's FIN

    lab.call(client.recv, 100, label="recv #1")
    lab.call(client.recv, 100, label="recv #2")
    lab.call(client.close, label="close()")
    lab.wait_state(client, "TIME_WAIT")  # it ACKed the server's FIN just before it moved
    lab.wait_state(server, None)  # ... and the server's kernel took that ACK in
    lab.snapshot("after close on client")


run_orderly = socklab.run(shutdown_write_read_then_close)

# %%
# The server's ``send()`` returns 3 and the client reads ``b'bye'`` before
# its end of file: no error on either side.
socklab.show(run_orderly.results())

# %%
# Each side's FIN is acknowledged, the server's data arrives in between, and
# there is no RST. The client's final ``close()`` puts nothing on the wire:
# the connection had already ended.
socklab.show(run_orderly.trace())

# %%
# As a ladder: two blue ``FIN-ACK`` arrows, the client's first, the server's
# ``PSH-ACK`` with the 3 bytes between them, and nothing red anywhere. The
# client's two ``recv()`` calls and its ``close()`` come after the last
# packet: all the client still had to do was read what had already arrived.
socklab.show(run_orderly.ladder())

# %%
# The client ends in ``TIME-WAIT``, the ordinary end of the side that sent
# the first FIN.
socklab.show(run_orderly.states())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
CLOSE_THEN_SEND = HANDSHAKE + ["client [F.]", "server [.]", "server [P.]", "client [R]"]
HALF_CLOSED = {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)}
run_close.expect(calls={"server: send #1": 1, "server: send #2": "EPIPE"},
                 flow=CLOSE_THEN_SEND)
run_shutdown.expect(
    calls={"client: shutdown(SHUT_RDWR)": None,
           "server: send #1": 1, "server: send #2": "EPIPE"},
    flow=CLOSE_THEN_SEND,
    states={
        # no timer while the program holds the socket; tcp_fin_timeout once it lets go
        "after shutdown on client": {
            **HALF_CLOSED, "client": {"state": "FIN_WAIT2", "timer": ""}},
        "after close on client": {
            **HALF_CLOSED, "client": {"state": "FIN_WAIT2", "timer": "timewait"}},
        "after send on server": {"client": None, "server": None},
    },
)
run_no_close.expect(
    calls={"server: send #1": 1, "server: send #2": "EPIPE",
           "client: recv": "ECONNRESET"},
    flow=CLOSE_THEN_SEND,
)
run_orderly.expect(
    calls={"server: recv": b"", "server: send": 3,
           "client: recv #1": b"bye", "client: recv #2": b""},
    flow=HANDSHAKE + ["client [F.]", "server [.]", "server [P.]", "client [.]",
                      "server [F.]", "client [.]"],
    states={"after close on client": {"client": "TIME_WAIT", "server": None}},
)
run_shutdown.summarize(closer="client: shutdown(SHUT_RDWR)",
                       sends=["server: send #1", "server: send #2"])
run_orderly.summarize(closer="client: shutdown(SHUT_WR)", sends=["server: send"],
                      recv="server: recv")
socklab.show(run_shutdown.about())

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
# * ``TCP_ABORT_ON_DATA``: data arrived for a socket whose receiving side was
#   closed. The kernel counts it (``TCPAbortOnData``) and resets that socket
#   itself, which then sends the RST.
#
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
run_close.expect(resets=[('client', 'TCP_TIMEWAIT_SOCKET')])
run_shutdown.expect(resets=[('client', 'TCP_TIMEWAIT_SOCKET')], counters={"TcpExtTCPAbortOnData": 0})
run_no_close.expect(resets=[('client', 'TCP_ABORT_ON_DATA')], counters={"TcpExtTCPAbortOnData": 1})
socklab.show(run_close.events())

# %%
# .. admonition:: References
#
#    ``shutdown(2)`` (``SHUT_RD``, ``SHUT_WR``, ``SHUT_RDWR``), ``close(2)``, ``send(2)``
#    (``EPIPE``, ``MSG_NOSIGNAL``), ``recv(2)`` (a return value of 0), ``tcp(7)``
#    (``tcp_fin_timeout``); RFC 9293 section 3.6.1 (half-closed connections), RFC 2525
#    section 2.17 (a TCP that can no longer deliver received data SHOULD send a RST),
#    RFC 1122 section 4.2.2.13 ("if new data is received after CLOSE is called, its TCP
#    SHOULD send a RST").
