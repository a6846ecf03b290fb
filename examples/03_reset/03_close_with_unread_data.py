"""
close() with unread data
========================

When the closing program has not read everything the peer sent, ``close()``
sends an RST instead of a FIN, without any ``SO_LINGER``: one unread byte is
enough. The peer's next ``recv()`` gets ``ECONNRESET`` instead of ``b''``,
and its ``send()`` then fails with ``EPIPE``.
"""

# %%
# Everything read: FIN
# --------------------
# First the ordinary close, for comparison. The server sends ``b"hello"``,
# the client reads all 5 bytes and closes; the server reads the end of file
# and closes too.
import select
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


def everything_read(lab):
    listener, client, server = connected_pair()
    lab.call(server.send, b"hello", label="send")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the 5 bytes
    lab.call(client.recv, 100, label="recv")
    lab.snapshot("before close on client")

    lab.call(client.close, label="close(), all read")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel took the ACK in
    lab.snapshot("after close on client")

    lab.wait_poll(server, select.POLLIN, label="poll(POLLIN)")
    lab.call(server.recv, 100, label="recv")
    lab.call(server.close, label="close()")
    lab.wait_packet(".", dport=PORT, after=2)  # the client's kernel ACKs that FIN
    lab.wait_state(client, "TIME_WAIT")  # (it sends that ACK just before it moves)
    lab.wait_state(server, None)  # ... and the server's kernel took the ACK in
    lab.snapshot("after close on server")


run_read = socklab.run(everything_read)

# %%
# With an empty ``Recv-Q``, the client's ``close()`` leads to the usual
# teardown: ``FIN-WAIT-2`` and ``CLOSE-WAIT`` (``Recv-Q`` 1, the FIN), then
# ``TIME-WAIT`` for the client once the server has closed as well.
socklab.show(run_read.states())

# %%
# The server's ``poll()`` reports ``POLLIN`` alone, and its ``recv()``
# returns ``b''``: an orderly end of file.
socklab.show(run_read.results())

# %%
# Two FINs, each acknowledged, and no RST.
socklab.show(run_read.trace())

# %%
# As a ladder diagram, time flowing down: two blue ``FIN-ACK`` arrows, one
# from each side, each answered by an ``ACK``, and each socket's states in
# boxes on its lifeline, down to the client's ``TIME-WAIT`` and the server's
# ``CLOSED``.
socklab.show(run_read.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this first run, from the states the tables show: both ``ESTABLISHED``
# before the close; the client in ``FIN-WAIT-2`` and the server in
# ``CLOSE-WAIT`` after it; once the server has closed too, the client in
# ``TIME-WAIT`` and the server gone (``CLOSED``). Both paths are the
# figure's solid ones. Two states were too brief for a snapshot: the
# client's ``FIN-WAIT-1``, from its FIN until the server's ACK of it, and
# the server's ``LAST-ACK``, from the server's FIN until the client's ACK,
# the last two packets. The client's path stops in ``TIME-WAIT``, which it
# leaves 60 seconds later, after the run. The run below, with one byte
# unread, leaves this picture at its first step (its own diagram follows it).
# The ``run.expect`` in this cell checks the states drawn, and the two FINs
# and their ACKs, against the run.
CLIENT_PATH = ["ESTABLISHED", "FIN_WAIT2", "TIME_WAIT"]
SERVER_PATH = ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]
run_read.expect(
    states={
        "before close on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "after close on client": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after close on server": {"client": "TIME_WAIT", "server": None},
    },
    packets={5: {"flags": "F.", "dport": PORT}, 6: {"flags": ".", "sport": PORT, "ack": 2},  # FIN-WAIT-1
             7: {"flags": "F.", "sport": PORT}, 8: {"flags": ".", "dport": PORT, "ack": 7}},  # LAST-ACK
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# One byte unread: RST
# --------------------
# The same, except that the client reads 4 of the 5 bytes before it closes.


def one_byte_unread(lab):
    listener, client, server = connected_pair()
    lab.call(server.send, b"hello", label="send")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the 5 bytes
    lab.call(client.recv, 4, label="recv(4)")
    lab.snapshot("before close on client")

    lab.call(client.close, label="close(), 1 byte unread")
    lab.wait_packet("R.", dport=PORT)
    lab.wait_state(client, None)  # (the client's socket was gone before it left)
    lab.wait_state(server, None)  # ... and the server's kernel took the reset in
    lab.snapshot("after close on client")

    lab.wait_poll(server, select.POLLIN, label="poll(POLLIN)")
    lab.call(server.recv, 100, label="recv")
    lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send again")


run_unread = socklab.run(one_byte_unread)

# %%
# Before the close the client's ``Recv-Q`` holds the unread ``o``. After it,
# both connections are gone at once: no ``FIN-WAIT``, no ``CLOSE-WAIT``, no
# ``TIME-WAIT``.
socklab.show(run_unread.states())

# %%
# ``poll()`` reports the reset (``POLLERR``, ``POLLHUP`` besides ``POLLIN``)
# without the server sending anything. Its ``recv()`` fails with
# ``ECONNRESET`` instead of returning ``b''``, and a ``send()`` after that
# fails with ``EPIPE``. All the server learns is that the connection was
# reset: not that a byte went unread, nor which one.
socklab.show(run_unread.results())

# %%
# ``close()`` put an ``[R.]`` on the wire where the first run had an
# ``[F.]``, with ``ack 6``: the client's kernel had received all 5 bytes. This
# is what RFC 1122 section 4.2.2.13 asks for ("If such a host issues a CLOSE
# call while received data is still pending in TCP [...] its TCP SHOULD send a
# RST to show that data was lost"); Linux's ``tcp_close()`` cites RFC 2525
# section 2.17 for it. The seed's scenario is the other half of the same
# rule: data arriving *after* the close also draws an RST. The page
# :ref:`Program exit without close() <sphx_glr_auto_examples_02_close_03_exit_without_close.py>`
# meets the rule from the seed's side: the reset at the end of the seed's
# trace came from closing the client with one byte unread, and it comes
# whether the program calls ``close()`` or simply exits.
socklab.show(run_unread.trace())

# %%
# The ladder of this run against the first one: where the first had the
# client's blue ``FIN-ACK``, a red ``RST-ACK``, and no arrow follows it. The
# lifelines jump from ``ESTABLISHED`` to ``CLOSED``, and the server's calls
# below the reset report it: ``poll()`` with ``POLLERR``, ``recv()`` with
# ``ECONNRESET``.
socklab.show(run_unread.ladder())

# %%
# In the state diagram both sockets leave ``ESTABLISHED`` straight for
# ``CLOSED``: the client by sending the reset, on a dashed edge Figure 5 does
# not draw (the RFC gives this step only in its text, section 3.6.1), the
# server by receiving it (``rcv RST``). Compare the solid paths of the first
# run above: one unread byte is the whole difference.
run_unread.expect(
    states={"before close on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
            "after close on client": {"client": None, "server": None}},
    packets={5: {"flags": "R.", "dport": PORT}},  # the client's reset, and no FIN before it
)
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(["ESTABLISHED", "close() with unread data", "CLOSED"]),
    "server": socklab.state_path(["ESTABLISHED", "rcv RST", "CLOSED"]),
}))

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
HANDSHAKE_AND_DATA = ["client [S]", "server [S.]", "client [.]",
                      "server [P.]", "client [.]"]
run_read.expect(
    calls={"client: recv": b"hello", "server: poll(POLLIN)": "POLLIN",
           "server: recv": b""},
    flow=HANDSHAKE_AND_DATA + ["client [F.]", "server [.]",
                               "server [F.]", "client [.]"],
    states={
        "before close on client": {"client": ("ESTABLISHED", 0)},
        "after close on client": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)},
        "after close on server": {"client": "TIME_WAIT", "server": None},
    },
)
run_unread.expect(
    calls={"client: recv(4)": b"hell", "server: poll(POLLIN)": "POLLIN|POLLERR|POLLHUP",
           "server: recv": "ECONNRESET", "server: send again": "EPIPE"},
    flow=HANDSHAKE_AND_DATA + ["client [R.]"],
    states={
        "before close on client": {"client": ("ESTABLISHED", 1)},
        "after close on client": {"client": None, "server": None},
    },
    packets={5: {"flags": "R.", "ack": 6}},  # all 5 bytes had arrived
)
run_read.summarize(closer="client: close(), all read", recv="server: recv")
run_unread.summarize(closer="client: close(), 1 byte unread", recv="server: recv")
socklab.show(run_unread.about())

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
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
run_unread.expect(resets=[('client', 'TCP_ABORT_ON_CLOSE')])
run_read.expect(resets=[])
socklab.show(run_unread.events())

# %%
# .. admonition:: References
#
#    ``close(2)``, ``recv(2)`` (``ECONNRESET``; a return value of 0), ``send(2)``
#    (``EPIPE``, ``MSG_NOSIGNAL``), ``poll(2)``, ``tcp(7)``; RFC 9293 section 3.6.1
#    (half-closed connections: a CLOSE with received data pending SHOULD send a RST),
#    RFC 2525 section 2.17 ("Failure to RST on close with data pending"), RFC 1122
#    section 4.2.2.13 (closing a connection).
