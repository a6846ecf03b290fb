"""
Own shutdown(SHUT_WR), then send
================================

When the server shuts down its own sending direction and then calls
``send()``, the call fails at once with ``EPIPE``. The error is decided
locally, and the failed call puts nothing on the wire: after its FIN the
server sends neither the byte nor a reset.
"""

# %%
# The scenario
# ------------
# The seed's last ``EPIPE`` case, "trivially true":
# ``shutdown(s_sock, SHUT_WR)`` on the server, then ``send(s_sock, "a", 1,
# MSG_NOSIGNAL)``. Same setup as the other pages (127.0.0.1:4321). The scenario
# waits for the client's ACK of the server's FIN before sending, so the trace
# is the same in every run. At the end the client closes, then the server.
import socket

import socklab

PORT = 4321


def own_shutdown_then_send(lab):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.snapshot("before shutdown on server")

    lab.call(server.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the FIN
    lab.wait_state(server, "FIN_WAIT2")  # ... and the server's kernel took it in
    lab.snapshot("after shutdown on server")

    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send")
    lab.snapshot("after send on server")

    server_side = (f"127.0.0.1:{PORT}", f"127.0.0.1:{client.getsockname()[1]}")
    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the client's FIN
    lab.wait_state(server_side, "TIME_WAIT")  # (it sends that ACK just before it moves)
    lab.wait_state(client, None)  # ... and the client's kernel took the ACK in
    lab.snapshot("after close on client")
    lab.call(server.close, label="close()")
    listener.close()


run = socklab.run(own_shutdown_then_send)

# %%
# Socket states
# -------------
# The roles of the other pages, swapped: after its own shutdown the server is
# in ``FIN-WAIT-2`` and the client in ``CLOSE-WAIT``, with the FIN counted in
# the client's ``Recv-Q``. The failed ``send()`` changes nothing: the
# "after send on server" table is the same, with ``Send-Q`` 0 (no byte was
# queued). After the client's ``close()`` the client's socket is gone and
# the server's side is in ``TIME-WAIT``: the side that sent the first FIN
# waits, whichever called ``connect()``.
socklab.show(run.states())

# %%
# Call results
# ------------
# ``send()`` fails with ``EPIPE`` at once: ``send(2)`` documents ``EPIPE`` as
# "The local end has been shut down on a connection oriented socket". Without
# ``MSG_NOSIGNAL`` a C program would also get ``SIGPIPE`` (see
# :ref:`sphx_glr_auto_examples_01_local_01_pipe_epipe.py`).
socklab.show(run.results())

# %%
# Packet trace
# ------------
# Handshake, the server's ``[F.]`` and the client's ``[.]``. After that the
# server sends nothing of its own: no ``[P.]`` carrying the byte, no ``[R]``.
# The next packets come from the client's ``close()``, its ``[F.]``, and the
# server's ``[.]`` acknowledging it.
socklab.show(run.trace())

# %%
# The same run as a ladder diagram, time flowing down. Find the red
# ``send = EPIPE`` on the server's lifeline: no arrow leaves the server at
# that height, and the next arrow, the client's blue ``FIN-ACK``, comes from
# the client's ``close()``. The boxes show the roles swapped against the
# other pages: the server in ``FIN-WAIT-2`` on the right, the client in
# ``CLOSE-WAIT`` on the left.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this run. The figure puts the side that closes first on the left, so here
# the server takes the left-hand path. The states are the ones the tables
# show: both ``ESTABLISHED``; after the shutdown the server in
# ``FIN-WAIT-2`` and the client in ``CLOSE-WAIT``, and the same after the
# failed ``send()``; after the client's ``close()`` the server in
# ``TIME-WAIT`` and the client gone (``CLOSED``). The figure's ``close()``
# is the RFC's CLOSE call, "I have no more data to send" (section 3.6),
# which the server's ``shutdown(SHUT_WR)`` makes here. The ``send()`` that
# failed is no arrow at all: a SEND in ``FIN-WAIT-2`` returns "error:
# connection closing" and changes no state (section 3.10.2). Two states
# were too brief for a snapshot: the server's ``FIN-WAIT-1``, from its FIN
# until the client's ACK of it, and the client's ``LAST-ACK``, from the FIN
# its ``close()`` sent until the server's ACK, the last two packets. The
# server's path stops in ``TIME-WAIT``, which it leaves 60 seconds later,
# after the run. The ``run.expect`` in this cell checks those states, and
# the two FINs and their ACKs, against the run.
CLIENT_PATH = ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]
SERVER_PATH = ["ESTABLISHED", "FIN_WAIT2", "TIME_WAIT"]
run.expect(
    states={
        "before shutdown on server": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after shutdown on server": {"client": "CLOSE_WAIT", "server": "FIN_WAIT2"},
        "after send on server": {"client": "CLOSE_WAIT", "server": "FIN_WAIT2"},
        "after close on client": {"client": None, "server": "TIME_WAIT"},
    },
    packets={3: {"flags": "F.", "sport": PORT}, 4: {"flags": ".", "dport": PORT, "ack": 2},  # FIN-WAIT-1
             5: {"flags": "F.", "dport": PORT}, 6: {"flags": ".", "sport": PORT, "ack": 2}},  # LAST-ACK
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={"server: shutdown(SHUT_WR)": None, "server: send": "EPIPE"},
    flow=["client [S]", "server [S.]", "client [.]", "server [F.]", "client [.]",
          "client [F.]", "server [.]"],
    states={
        "after shutdown on server": {"server": ("FIN_WAIT2", 0),
                                     "client": ("CLOSE_WAIT", 1)},
        # the failed send() queued nothing: Send-Q 0
        "after send on server": {"server": {"state": "FIN_WAIT2", "recv_q": 0, "send_q": 0},
                                 "client": ("CLOSE_WAIT", 1)},
    },
)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``shutdown(2)`` (``SHUT_WR``: "further transmissions will be disallowed"),
#    ``send(2)`` (``EPIPE``, ``MSG_NOSIGNAL``), ``tcp(7)``, ``socket(7)``;
#    RFC 9293 section 3.10.2 (SEND in ``FIN-WAIT-1`` or ``FIN-WAIT-2`` state:
#    return "error: connection closing" and do not service the request).
