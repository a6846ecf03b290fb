"""
SO_LINGER zero: close() resets
==============================

With ``SO_LINGER`` set to ``{1, 0}``, the client's ``close()`` sends an RST
right after the handshake instead of a FIN, and the client keeps no
``TIME-WAIT``. The server's next ``send()`` fails with ``ECONNRESET`` (the
seed's "send: Connection reset by peer"), the one after it with ``EPIPE``.
"""

# %%
# The scenario
# ------------
# The seed's program with its ``struct linger lo = { 1, 0 }`` before the
# client's ``close()``. In Python the option is the packed C struct:
# ``struct.pack("ii", 1, 0)`` is ``l_onoff = 1, l_linger = 0``. After the
# reset, the server calls ``send()`` twice (the seed's test) and then
# ``recv()``.
import select
import socket
import struct

import socklab

PORT = 4321
LINGER_ZERO = struct.pack("ii", 1, 0)  # struct linger { l_onoff = 1, l_linger = 0 }


def connected_pair():
    """The seed's set-up: listener on 127.0.0.1:4321, client, accepted server socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    return listener, client, server


def linger_zero_then_send(lab):
    listener, client, server = connected_pair()
    lab.snapshot("before close on client")

    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(client.close, label="close(), linger 0")
    lab.wait_packet("R.", dport=PORT)  # the client's reset, sent by close() itself
    lab.wait_state(client, None)  # (the client's socket was gone before it left)
    lab.wait_state(server, None)  # ... and the server's kernel took the reset in
    lab.snapshot("after close on client")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")
    lab.call(server.recv, 1, label="recv")


run = socklab.run(linger_zero_then_send)

# %%
# Socket states
# -------------
# The seed's moments. Before the close both ends are ``ESTAB``. After it, the
# table holds only the listener: the client did not go through ``FIN-WAIT``
# or ``TIME-WAIT`` at all, and the server's connection is gone too, although
# the program still holds its socket: the RST moved it to ``CLOSED``, which
# ``ss`` (like the seed's ``netstat``) does not list. The seed printed no
# lines after the close either.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``close()`` succeeds (``None``). The server's first ``send()`` fails with
# ``ECONNRESET``, as in the seed, not with ``EPIPE``; the second fails with
# ``EPIPE``, and ``recv()`` returns ``b''``, the end-of-file value. The
# reset is reported once, to the first call that looks.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# Four packets, as in the seed's dump: the handshake, then the client's
# ``[R.]`` (seq 1, ack 1: the seed's ``R 1:1(0) ack 1``). No FIN ever
# leaves the client, and the server's failed ``send()`` calls put nothing on
# the wire. The numbers inside the packets differ from the seed's: this
# kernel's ``lo`` has an MTU of 65536 (mss 65495, the seed's 16396) and a
# larger receive buffer limit (wscale 10, the seed's 7).
socklab.show(run.trace())

# %%
# The same run as a ladder diagram, time flowing down. Look at what is not
# there: no blue FIN arrow, and no state between ``ESTABLISHED`` and
# ``CLOSED`` on either lifeline. The red ``RST-ACK`` and the client's
# ``close()`` sit on neighbouring rows: the call sent the reset itself. The
# server's two ``send()`` calls, written in red on the right, return errors
# without putting an arrow on the wire.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# -----------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this run, from the states the tables show: both ``ESTABLISHED``, then both
# gone (``CLOSED``). Neither path is drawn in the RFC's figure (dashed:
# transitions described in its text): the client's ``close()`` with
# ``SO_LINGER`` 0 is the RFC's ABORT call, which sends a reset and enters
# ``CLOSED`` at once (section 3.10.5), and the server goes from
# ``ESTABLISHED`` straight to ``CLOSED`` on that reset (section 3.10.7.4).
# Compare the
# :ref:`close() page <sphx_glr_auto_examples_02_close_01_close_then_send.py>`,
# where both sockets first take the figure's solid paths, to ``FIN-WAIT-2``
# and ``CLOSE-WAIT``, before a reset ends them. The ``run.expect`` in this
# cell checks those states and the reset against the run.
CLIENT_PATH = ["ESTABLISHED", "close() with SO_LINGER 0"]
SERVER_PATH = ["ESTABLISHED", "rcv RST"]
run.expect(
    states={
        "before close on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after close on client": {"client": None, "server": None},
    },
    packets={3: {"flags": "R."}},  # after the handshake, the client's reset
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# recv() first
# ------------
# The order matters. Here the server, instead of sending, waits in
# ``poll()`` for its socket to become readable and then calls ``recv()``
# twice and ``send()`` once.


def linger_zero_then_recv(lab):
    listener, client, server = connected_pair()

    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    lab.call(client.close, label="close(), linger 0")
    lab.wait_poll(server, select.POLLIN, label="poll(POLLIN)")

    lab.call(server.recv, 1, label="recv #1")
    lab.call(server.recv, 1, label="recv #2")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send")


run_recv = socklab.run(linger_zero_then_recv)

# %%
# ``poll()`` reports ``POLLIN`` together with ``POLLERR`` and ``POLLHUP``:
# the server sees the reset without sending anything (after a plain FIN,
# ``poll()`` reports ``POLLIN`` alone: see
# :ref:`sphx_glr_auto_examples_03_reset_03_close_with_unread_data.py`). Now
# ``recv()`` is the call that gets ``ECONNRESET``; the second ``recv()``
# returns ``b''``, and the ``send()`` fails with ``EPIPE``, not with
# ``ECONNRESET``. The kernel keeps the reset as the socket's pending error
# (what ``SO_ERROR`` reads and clears) and hands it to the next ``send()``,
# or to the first ``recv()`` that finds no queued data (here, none had
# arrived); after that the socket is simply shut down in both directions.
socklab.show(run_recv.results())

# %%
# The packets are the same four.
socklab.show(run_recv.trace())

# %%
# In the ladder of this run the server's calls all come after the red
# ``RST-ACK``, as in the first run; what changed is their order, and with it
# which call is written in red with ``ECONNRESET``: the first ``recv()``,
# right under the ``poll()`` that woke up on the reset.
socklab.show(run_recv.ladder())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
HANDSHAKE_THEN_RESET = ["client [S]", "server [S.]", "client [.]", "client [R.]"]
run.expect(
    calls={"client: close(), linger 0": None, "server: send #1": "ECONNRESET",
           "server: send #2": "EPIPE", "server: recv": b""},
    flow=HANDSHAKE_THEN_RESET,
    states={
        "before close on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after close on client": {"client": None, "server": None},
    },
    packets={3: {"flags": "R.", "seq": 1, "ack": 1}},  # the seed's R 1:1(0) ack 1
)
run_recv.expect(
    calls={"server: poll(POLLIN)": "POLLIN|POLLERR|POLLHUP",
           "server: recv #1": "ECONNRESET", "server: recv #2": b"",
           "server: send": "EPIPE"},
    flow=HANDSHAKE_THEN_RESET,
)
run.summarize(closer="client: close(), linger 0",
              sends=["server: send #1", "server: send #2"], recv="server: recv")
socklab.show(run.about())

# %%
# The kernel's reasons
# ---------------------
# Each reset of this page with the reason the kernel recorded for it (its
# ``tcp:tcp_send_reset`` tracepoint; the names are ``enum sk_rst_reason`` in
# ``include/net/rstreason.h``). Recorded as root only: elsewhere these claims
# are reported as unchecked.
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
run.expect(resets=[('client', 'TCP_STATE')])
run_recv.expect(resets=[('client', 'TCP_STATE')])
socklab.show(run.events())

# %%
# .. admonition:: References
#
#    ``socket(7)`` (``SO_LINGER``, whose text does not cover a zero timeout; ``SO_ERROR``: "Get
#    and clear the pending socket error"), ``send(2)`` (``ECONNRESET``, ``EPIPE``,
#    ``MSG_NOSIGNAL``), ``recv(2)`` (a return value of 0), ``poll(2)``, ``tcp(7)``; RFC 9293
#    section 3.10.5 (ABORT: send a reset, flush the queues) and section 3.10.7.4 (a reset
#    arriving in ``ESTABLISHED``: the user gets "connection reset").
