"""
Peer close(), then send twice
=============================

The client closes its socket; the server's ``send()`` still succeeds, the
client's kernel answers that byte with an RST, and the server's next
``send()`` fails with ``EPIPE``. The rule: every ``send()`` made before the RST
gets back succeeds, and the first one after it fails. On loopback the RST is
back before the second ``send()``, so that is the one that fails; across a
network several can succeed first
(:ref:`shown across a round trip <sphx_glr_auto_examples_14_across_a_network_01_sends_before_the_rst_arrives.py>`).
This is the seed's central program, rewritten with Python's ``socket`` module and
run on this build's kernel.
"""

# %%
# The scenario
# ------------
# Plain socket calls, as in the seed: a listener on 127.0.0.1:4321, a client
# that connects, the server side from ``accept()``. ``lab.snapshot`` records the
# socket table (what the seed prints with ``netstat -tn``); ``lab.call`` records
# what a call returned or which errno it raised; ``lab.wait_packet`` and
# ``lab.wait_state`` wait for the packet and the state the page is about,
# instead of sleeping.
import socket

import socklab

PORT = 4321


def close_then_send(lab):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.snapshot("before close on client")

    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel has taken it in
    lab.snapshot("after close on client")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
    lab.wait_packet("R")  # the client's kernel answers with a reset
    lab.wait_state(client, None)  # ... having dropped its own socket
    lab.wait_state(server, None)  # ... and the reset frees the server's socket
    lab.snapshot("after send on server")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #2")


run = socklab.run(close_then_send)

# %%
# Socket states
# -------------
# The same three moments as the seed's ``netstat`` output. After the close the
# client sits in ``FIN-WAIT-2`` and the server in ``CLOSE-WAIT`` with
# ``Recv-Q`` 1: the FIN occupies one sequence number the server has not read.
# After the send, both sockets are gone: the RST freed them.
socklab.show(run.states())

# %%
# Call results
# ------------
# The first ``send()`` returns 1: the kernel accepted the byte, it does not know
# yet that nobody will read it. The second, made after the RST got back (the
# scenario waits for it), fails with ``EPIPE``. On loopback the RST is back
# within microseconds (the ladder below); across a network it takes a round
# trip, and every ``send()`` made before it gets back succeeds.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# Handshake, the client's ``[F.]``, the server's ``[.]`` acknowledging it, the
# server's byte ``[P.]``, and the client's ``[R]``: the reset that made the
# second ``send()`` fail.
socklab.show(run.trace())

# %%
# The same run as a ladder diagram: time flows down, each arrow is one packet
# from the trace above, the boxes are the socket states of the snapshots, and
# the dots are the calls at the moment they returned. Note where ``send #1 = 1``
# lands: on loopback the client's RST is already on its way before the
# server's ``send()`` has even returned.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this run. The states are the ones the three tables show: both sockets
# ``ESTABLISHED``; the client in ``FIN-WAIT-2`` and the server in
# ``CLOSE-WAIT``; then neither in the table (``CLOSED``). Between the first
# two, the client passed through ``FIN-WAIT-1``, too brief for a snapshot: it
# lasts from the client's FIN until the server's ACK of it. The last step is
# where the run leaves the RFC's figure (dashed: transitions its text and notes
# describe but the figure leaves out): the client, closed and unable to read,
# answers the server's byte with a reset (``rcv data after close()``), and the
# server's ``CLOSE-WAIT`` ends on that reset (``rcv RST``), not by its own
# ``close()``. As root the paths are the kernel's own: every state change it
# recorded, and how each socket ended (the next section); elsewhere they are
# the tables' states. The ``run.expect`` in this cell checks those states
# against the run, so the picture cannot drift from the tables.
CLIENT_PATH = ["ESTABLISHED", "FIN_WAIT2", "rcv data after close()"]
SERVER_PATH = ["ESTABLISHED", "CLOSE_WAIT", "rcv RST"]
run.expect(
    states={
        "before close on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after close on client": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after send on server": {"client": None, "server": None},
    },
    packets={5: {"flags": "P."}, 6: {"flags": "R"}},  # the data, then the reset it drew
)
if run.kernel_events:
    paths = {"client": run.path("client"), "server": run.path("server")}
else:
    paths = {"client": socklab.state_path(CLIENT_PATH), "server": socklab.state_path(SERVER_PATH)}
socklab.show(socklab.draw_state_diagram(highlight=paths))

# %%
# Why the RST: the kernel's account
# ---------------------------------
# The kernel's own events of this run (recorded as root, from its tracepoints,
# for this run's network namespace only). The client's socket is not gone
# when the server's byte arrives: it went ``FIN_WAIT1`` -> ``FIN_WAIT2``, then
# ``FIN_WAIT2`` -> ``CLOSE``, which on Linux means its program had closed it and
# the kernel swapped it for a small "timewait" socket that keeps the
# connection in ``FIN_WAIT2`` (with ``tcp_fin_timeout`` at 60 s or less, the
# default; above that the full socket stays, with a keepalive timer). That socket sends the RST, and the kernel says
# why: ``TCP_TIMEWAIT_SOCKET`` ("happen on the timewait socket", in
# ``include/net/rstreason.h``). In RFC 9293's words, new data arrived after
# CLOSE (section 3.6.1), and the host SHOULD send a reset. The server's socket
# takes the reset in ``CLOSE_WAIT``, which is why its next ``send()`` fails
# with ``EPIPE`` and not ``ECONNRESET`` (``tcp_reset()`` picks the errno by
# state).
socklab.show(run.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={"server: send #1": 1, "server: send #2": "EPIPE"},
    flow=["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
          "server [P.]", "client [R]"],
    states={
        "after close on client": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)},
        "after send on server": {"client": None, "server": None},
    },
    resets=[("client", "TCP_TIMEWAIT_SOCKET")],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"]},
)
# No data reached the server before the FIN, so its kernel's delayed-ACK
# timeout (``ato`` in ``TCP_INFO``) was 0: it ACKs the FIN at its next timer
# tick, a few milliseconds (40 ms once data has arrived: see
# :ref:`sphx_glr_auto_examples_02_close_04_detect_fin.py`).
ato = run.tcp_info("before close on client")["server"].ato
if ato != 0:
    raise socklab.ClaimError(f"the page says the server's ato is 0 before any data; it is {ato} µs")
run.summarize(closer="client: close()", sends=["server: send #1", "server: send #2"])
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``send(2)`` (``EPIPE``, ``MSG_NOSIGNAL``), ``tcp(7)``, RFC 9293 section 3.6.1
#    ("if new data is received after CLOSE is called, its TCP implementation
#    SHOULD send a RST to show that data was lost"), ``include/net/rstreason.h``
#    (the kernel's reset reasons).
