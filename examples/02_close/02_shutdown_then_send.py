"""
Peer shutdown(SHUT_WR), then send
=================================

The client calls ``shutdown(SHUT_WR)`` instead of ``close()``. The server's
``send()`` succeeds, and this time the client's kernel answers the byte with a
plain ACK, not a reset: the client can still ``recv()`` it. The connection
stays half-closed, the client in ``FIN-WAIT-2`` and the server in
``CLOSE-WAIT``, for as long as both keep their sockets.
"""

# %%
# The scenario
# ------------
# The seed's program with its one-line change: ``shutdown(c_sock, SHUT_WR)``
# where it had ``close(c_sock)``. Same setup as
# :ref:`sphx_glr_auto_examples_02_close_01_close_then_send.py`: a listener on
# 127.0.0.1:4321, a client that connects, the server side from ``accept()``.
# Each ``lab.wait_packet`` waits for the packet the page shows next, so the
# trace is the same in every run. At the end the client reads the byte and
# both sides close.
import socket

import socklab

PORT = 4321


def shutdown_then_send(lab):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.snapshot("before shutdown on client")

    lab.call(client.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel took it in
    lab.snapshot("after shutdown on client")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the byte
    lab.snapshot("after send on server")  # (it queued the byte before it ACKed it)

    lab.call(client.recv, 1, label="recv(1)")
    lab.snapshot("after recv on client")

    server_side = (f"127.0.0.1:{PORT}", f"127.0.0.1:{client.getsockname()[1]}")
    lab.call(client.close, label="close()")
    lab.call(server.close, label="close()")
    lab.wait_packet(".", dport=PORT, after=2)  # the client's kernel ACKs the FIN
    lab.wait_state(client, "TIME_WAIT")  # (it sends that ACK just before it moves)
    lab.wait_state(server_side, None)  # ... and the server's kernel took the ACK in
    lab.snapshot("after close on both")
    listener.close()


run = socklab.run(shutdown_then_send)

# %%
# Socket states
# -------------
# The seed's moments, named for what happened ("after shutdown on client" is
# the seed's "after close on client": the seed kept its labels).
#
# * After the shutdown: client ``FIN-WAIT-2``, server ``CLOSE-WAIT`` with
#   ``Recv-Q`` 1, exactly as after a ``close()``: the FIN takes one sequence
#   number that the server has not read. One difference from the
#   :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`:
#   the client's ``FIN-WAIT-2`` has no timer. An orphaned socket (closed by its
#   program) gets ``tcp_fin_timeout`` (60 s by default) to receive the peer's
#   FIN; a socket its program still holds waits as long as the program does.
# * After the send: both sockets are still there, and now the client's
#   ``Recv-Q`` is 1 too: the byte ``a``, received and waiting to be read. The
#   seed's third ``netstat`` shows the same two lines with ``1`` in both
#   ``Recv-Q`` columns.
# * After the client's ``recv()`` its ``Recv-Q`` is back to 0.
# * After both close: the server socket is gone; the client's side waits in
#   ``TIME-WAIT``, the state of the side that received the last FIN.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``send()`` returns 1, and this time nothing goes wrong afterwards: the
# client's ``recv()`` returns the byte. ``shutdown(SHUT_WR)`` stopped only the
# client's sending direction. The client's ``close()`` puts nothing on the
# wire (its FIN already went out with the shutdown); the server's ``close()``
# sends its own FIN.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# Handshake, the client's ``[F.]``, the server's ``[.]``, the server's byte
# ``[P.]``, and then, where the ``close()`` page had the client's ``[R]``, a
# plain ``[.]`` acknowledging the byte (``ack 2``): the seed's "indication that
# the client did not use close". The last two packets are the server's FIN at
# its ``close()`` and the client's ACK of it.
#
# How this trace differs from the seed's, and why:
#
# * ``mss 65495`` where the seed has ``mss 16396``: the MSS follows the MTU of
#   ``lo``. The seed's ``lo`` had an MTU of 16436 bytes (16436 - 40 = 16396);
#   today's has 65536, capped by the largest IP packet, 65535 bytes
#   (65535 - 40 = 65495). The SYNs' windows grew with it.
# * ``wscale 10`` instead of ``wscale 7``, and ``win 64`` after the handshake
#   instead of ``win 257``/``256``: the scale factor is chosen from the
#   largest receive buffer allowed (the third value of ``net.ipv4.tcp_rmem``),
#   larger on this build machine. The windows are counted in different units:
#   64 << 10 is 65536 bytes, 257 << 7 is 32896.
# * Sequence numbers: the seed's tcpdump printed the SYNs' absolute numbers;
#   here every number is relative, so two runs print the same text.
#   Timestamp values (``TS``) are left out for the same reason.
# * Timing: in the seed, the server's ``[.]`` came 0.1 ms after the FIN and
#   the data 16 ms later. This kernel may delay the ACK of a FIN (see the times
#   in the trace), so the scenario waits for it before sending; without that
#   wait the ACK could ride on the data packet and the separate ``[.]`` would
#   be missing.
socklab.show(run.trace())

# %%
# The ladder diagram of the same run: time flows down, one arrow per packet,
# the states of each snapshot in boxes, the calls where they returned. Compare
# it with the ladder of the
# :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`:
# the same first half, and then the server's byte draws a black ``ACK``
# arrow where that page has a red ``RST``. Both sockets stay on their
# lifelines until the two ``close()`` calls at the bottom, which end the
# connection with the server's FIN and the client's last ACK.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this run. This time both stay on the figure's solid lines. The states are
# the ones the tables show: both ``ESTABLISHED``; after the shutdown the
# client in ``FIN-WAIT-2`` and the server in ``CLOSE-WAIT``, unchanged by
# the server's byte and the client's ``recv()``; after both close the client
# in ``TIME-WAIT`` and the server gone (``CLOSED``). The figure's
# ``close()`` is the RFC's CLOSE call, "I have no more data to send"
# (section 3.6), and here ``shutdown(SHUT_WR)`` makes it: the same FIN
# goes out. Two states were too brief for a snapshot: the client's
# ``FIN-WAIT-1``, from its FIN until the server's ACK of it, and the
# server's ``LAST-ACK``, from the FIN its ``close()`` sent until the
# client's ACK, the last two packets. The client's path stops in
# ``TIME-WAIT``; the figure's ``timeout 2MSL`` takes it to ``CLOSED`` 60
# seconds later (the ``Timer`` column), after the run. Compare the
# :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`,
# where the same first steps end in resets. The ``run.expect`` in this cell
# checks those states, and the two FINs and their ACKs, against the run.
CLIENT_PATH = ["ESTABLISHED", "FIN_WAIT2", "TIME_WAIT"]
SERVER_PATH = ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]
run.expect(
    states={
        "before shutdown on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after shutdown on client": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after send on server": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after recv on client": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after close on both": {"client": "TIME_WAIT", "server": None},
    },
    packets={3: {"flags": "F.", "dport": PORT}, 4: {"flags": ".", "sport": PORT, "ack": 2},  # FIN-WAIT-1
             7: {"flags": "F.", "sport": PORT}, 8: {"flags": ".", "dport": PORT, "ack": 3}},  # LAST-ACK
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke. Of the SYN's options, the
# page names two, ``mss`` and ``wscale``: those are claimed.
run.expect(
    calls={"server: send": 1, "client: recv(1)": b"a", "client: close()": None},
    flow=["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
          "server [P.]", "client [.]", "server [F.]", "client [.]"],
    states={
        "before shutdown on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after shutdown on client": {
            "client": {"state": "FIN_WAIT2", "recv_q": 0, "timer": ""},  # no timer
            "server": ("CLOSE_WAIT", 1)},
        "after send on server": {
            "client": {"state": "FIN_WAIT2", "recv_q": 1, "timer": ""},
            "server": ("CLOSE_WAIT", 1)},
        "after recv on client": {"client": ("FIN_WAIT2", 0), "server": ("CLOSE_WAIT", 1)},
        "after close on both": {"client": "TIME_WAIT", "server": None},
    },
    # The client's byte is acknowledged, not reset (ack 2: the FIN and the byte), and
    # the window after the handshake is 64 (a wscale of 10 depends on net.ipv4.tcp_rmem).
    # The SYN's options: the MSS follows lo's MTU, the scale net.ipv4.tcp_rmem.
    packets={0: {"mss": 65495, "wscale": 10}, 2: {"win": 64}, 6: {"flags": ".", "ack": 2}},
)
run.summarize(closer="client: shutdown(SHUT_WR)", sends=["server: send"])
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``shutdown(2)`` (``SHUT_WR``: "further transmissions will be disallowed"),
#    ``send(2)``, ``tcp(7)`` (``tcp_fin_timeout``: how long an orphaned
#    connection waits in ``FIN-WAIT-2``), ``socket(7)``; RFC 9293 section 3.6.1
#    (half-closed connections: "closed in only one direction"), section 3.10.2
#    (SEND in ``CLOSE-WAIT`` state: "Segmentize the buffer and send it"),
#    section 3.10.7.4 (a FIN in ``FIN-WAIT-2``: enter ``TIME-WAIT``).
