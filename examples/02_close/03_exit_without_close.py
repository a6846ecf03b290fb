"""
Program exit without close()
============================

When the seed's program ends with its sockets still open, this kernel closes
them newest first: the server's FIN goes out, the client's kernel ACKs it, and
there is no reset. That also takes loopback timing: the server's FIN has
already reached the client's socket when the client's close runs; if it had
not, the unread byte would draw the same RST. The seed's trailing RST came from closing the *client*
first while the byte ``a`` sat unread in its receive queue, and an explicit
``close()`` in that order still produces it.
"""

# %%
# The program
# -----------
# The seed's program after its change to ``shutdown(c_sock, SHUT_WR)`` (see
# :ref:`sphx_glr_auto_examples_02_close_02_shutdown_then_send.py`), up to its
# ``puts("end of test")``. Then it sleeps 5 seconds and ends, leaving every
# descriptor open; the seed's trace shows a reset 5 seconds after the last ACK.
#
# Here the sleep is left out and the end is made real: ``end_program`` forks a
# copy of the process, which holds the same three sockets. The original lets go
# of its own descriptors (the copy still holds the sockets, so nothing is sent)
# and tells the copy to go; the copy calls ``os._exit(0)`` without closing
# anything, as a C program returning from ``main()`` would, and the kernel
# closes its descriptors. (A Python program that just ends is different: the
# interpreter closes its socket objects itself while it shuts down.)
import os
import socket

import socklab

PORT = 4321


def seed_program(lab):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.snapshot("before shutdown on client")
    client.shutdown(socket.SHUT_WR)
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel took the ACK in
    server.send(b"a", socket.MSG_NOSIGNAL)
    lab.wait_packet(".", dport=PORT, after=1)  # the client's kernel ACKs the byte
    return listener, client, server


def addresses(sock):
    """(local, peer) as the tables print them: to wait for the socket once closed."""
    return tuple(f"{h}:{p}" for h, p in (sock.getsockname(), sock.getpeername()))


def end_program(*socks):
    """End the process holding `socks` as the seed's program ends: exit, no close()."""
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: wait for the word, then exit with its descriptors open
        os.read(go_read, 1)
        os._exit(0)
    for sock in socks:
        sock.close()  # only this process's reference: the copy keeps the socket open
    os.write(go_write, b"x")
    os.waitpid(pid, 0)


def exit_as_is(lab):
    listener, client, server = seed_program(lab)
    for sock in (listener, client, server):
        lab.call(sock.fileno, label="fileno()")
    lab.snapshot("end of test")
    client_side, server_side = addresses(client), addresses(server)
    end_program(listener, client, server)
    lab.wait_packet(".", dport=PORT, after=2)  # the client's kernel ACKs the FIN
    lab.wait_state(client_side, "TIME_WAIT")  # (it sends that ACK just before it moves)
    lab.wait_state(server_side, None)  # the server socket is gone
    lab.snapshot("after exit")


run = socklab.run(exit_as_is)

# %%
# Socket states
# -------------
# Before the shutdown both ends are ``ESTAB``. At "end of test" the same two
# lines as in the seed's third ``netstat``:
# client ``FIN-WAIT-2`` with the unread ``a`` (``Recv-Q`` 1), server
# ``CLOSE-WAIT`` with the unread FIN (``Recv-Q`` 1). After the exit the server
# socket and the listener are gone, and the client's side is in ``TIME-WAIT``:
# the connection ended with a FIN from each side, not with a reset.
socklab.show(run.states())

# %%
# Packet trace
# ------------
# Everything up to the client's ACK of the byte is the seed's trace. Then,
# where the seed has ``R 2:2(0) ack 2`` from the client, this kernel shows the
# server's ``[F.]`` and the client's ``[.]``. No reset. The byte ``a`` was
# never read, and no packet says so: the client socket was already finished
# (moved to ``TIME-WAIT`` by the server's FIN) when its descriptor was closed,
# and such a close sends nothing. That is loopback timing: ``lo`` delivers the
# server's FIN to the client's kernel during the server's ``close()``, before
# the client's deferred close runs. Across a link with a delay, the client's
# close would come first and find ``a`` unread: a reset.
socklab.show(run.trace())

# %%
# The ladder diagram of this run: time flows down, one arrow per packet, the
# snapshots' states in boxes. Look at the bottom: after "end of test" the
# only packets are the blue ``FIN-ACK`` from the server and the client's
# ``ACK``, and the client's lifeline ends in ``TIME-WAIT``, the server's in
# ``CLOSED``. Nothing red: no reset.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram (its Figure 5), with the path each socket took in
# this run. The states are the ones the tables show: both ``ESTABLISHED``
# before the shutdown; the client in ``FIN-WAIT-2`` and the server in
# ``CLOSE-WAIT`` at "end of test"; after the exit the client in
# ``TIME-WAIT`` and the server gone (``CLOSED``). Both paths are the
# figure's solid ones, the ordinary end of a connection: the server's
# ``close()`` is the one the kernel made for the exiting process, and it
# sent a FIN. Two states were too brief for a snapshot: the client's
# ``FIN-WAIT-1``, from the FIN its ``shutdown()`` sent until the server's
# ACK of it, and the server's ``LAST-ACK``, from the server's FIN until the
# client's ACK, the last two packets. The client's path stops in
# ``TIME-WAIT``, which it leaves 60 seconds later (the ``Timer`` column),
# after the run: Linux holds every TIME-WAIT for a fixed 60 s
# (``TCP_TIMEWAIT_LEN`` in ``include/net/tcp.h``), not for RFC 9293's 2 MSL,
# which with its MSL of 2 minutes would be 4 minutes. The runs further down, with the client closed first, leave
# the figure instead: a reset ends both sockets from ``FIN-WAIT-2`` and
# ``CLOSE-WAIT``. The ``run.expect`` in this cell checks those states, and
# the two FINs and their ACKs, against the run.
CLIENT_PATH = ["ESTABLISHED", "FIN_WAIT2", "TIME_WAIT"]
SERVER_PATH = ["ESTABLISHED", "CLOSE_WAIT", "CLOSED"]
run.expect(
    states={
        "before shutdown on client": {"client": "ESTABLISHED", "server": "ESTABLISHED"},
        "end of test": {"client": "FIN_WAIT2", "server": "CLOSE_WAIT"},
        "after exit": {"client": "TIME_WAIT", "server": None},
    },
    packets={3: {"flags": "F.", "dport": PORT}, 4: {"flags": ".", "sport": PORT, "ack": 2},  # FIN-WAIT-1
             7: {"flags": "F.", "sport": PORT}, 8: {"flags": ".", "dport": PORT, "ack": 3}},  # LAST-ACK
)
time_wait = run.states_at("after exit")["client"]
assert time_wait.timer_kind == "timewait" and 55_000 <= (time_wait.timer_ms or 0) <= 60_000, (
    f"the page says TIME-WAIT lasts 60 s; the timer shows {time_wait.timer}")
socklab.show(socklab.draw_state_diagram(highlight={
    "client": socklab.state_path(CLIENT_PATH),
    "server": socklab.state_path(SERVER_PATH),
}))

# %%
# Why the server went first
# -------------------------
# The table below has the descriptor numbers: the listener, the client and
# the server got ascending numbers, in the order the program made them (3, 4
# and 5 in the seed's C program). At exit the kernel releases the process's
# descriptors in that order, but the final close of each socket is deferred
# and run afterwards, and since a 2015 kernel change (commit c82199061009,
# "task_work: remove fifo ordering guarantee") those deferred closes run
# newest first. So the server socket, the newest, was closed first. The
# seed's trace shows the opposite order, the client first; its older kernel
# ran those closes oldest first.
socklab.show(run.results())

# %%
# To test that explanation, the same program once more, but with the client
# moved to the newest descriptor before the exit (``os.dup`` gives the same
# socket a higher number). Now the client is closed first, with ``a`` unread,
# and the trace ends like the seed's: the client's ``[R.]``, ``seq 2, ack 2``,
# the seed's ``R 2:2(0) ack 2``.


def exit_client_newest(lab):
    listener, client, server = seed_program(lab)
    newest = os.dup(client.fileno())  # the same socket under a higher descriptor number
    client.close()
    client = socket.socket(fileno=newest)
    for sock in (listener, client, server):
        lab.call(sock.fileno, label="fileno()")
    lab.snapshot("end of test")
    client_side, server_side = addresses(client), addresses(server)
    end_program(listener, client, server)
    lab.wait_packet("R.")  # the client's kernel resets the connection
    lab.wait_state(client_side, None)  # the client socket is gone
    lab.wait_state(server_side, None)  # ... and the server socket, reset
    lab.snapshot("after exit")


client_newest = socklab.run(exit_client_newest)
socklab.show(client_newest.trace())

# %%
# As a ladder: the same start and the same states at "end of test"; then,
# where the first ladder has the server's ``FIN-ACK`` and the client's
# ``ACK``, a single red arrow, the client's ``RST-ACK``. It ends the
# connection for both: after the exit both lifelines say ``CLOSED``, and
# the server, reset, never sends a FIN of its own.
socklab.show(client_newest.ladder())

# %%
# Not about a missing close()
# ---------------------------
# The seed says the reset "is due to the program shutting down without
# properly closing the sockets". Calling ``close()`` does the same as the exit
# does: here the program closes its sockets itself, in the seed's order
# (listener, client, server), and the trace ends with the same ``[R.]``.


def close_in_seed_order(lab):
    listener, client, server = seed_program(lab)
    server_side = addresses(server)
    lab.call(listener.close, label="close()")
    lab.call(client.close, label="close()")
    lab.wait_packet("R.")  # the client's kernel resets the connection
    lab.wait_state(client, None)  # ... and dropped its socket
    lab.call(server.close, label="close()")
    lab.wait_state(server_side, None)  # the server socket is gone
    lab.snapshot("after close")


closed = socklab.run(close_in_seed_order)
socklab.show(closed.trace())

# %%
# The reason for the reset: unread data
# -------------------------------------
# A last run, the same as the exit with the client's descriptor newest, except
# that the client reads the byte first. The client is still closed before the
# server, but its receive queue is empty, and there is no reset (the kernel
# records none: checked below): the client's
# close sends nothing (its FIN went out with ``shutdown()``), the server's close
# sends its FIN, and the client's kernel ACKs it. Closing a socket that still
# holds received, unread data is what makes Linux send a reset: RFC 9293
# section 3.6.1 says a TCP implementation "SHOULD send a RST to show that data
# was lost". The page
# :ref:`close() with unread data <sphx_glr_auto_examples_03_reset_03_close_with_unread_data.py>`
# shows the same rule from the other side of the connection: what the peer's
# ``poll()``, ``recv()`` and ``send()`` report when such a reset arrives.


def read_then_exit_client_newest(lab):
    listener, client, server = seed_program(lab)
    lab.call(client.recv, 1, label="recv(1)")
    newest = os.dup(client.fileno())
    client.close()
    client = socket.socket(fileno=newest)
    client_side, server_side = addresses(client), addresses(server)
    end_program(listener, client, server)
    lab.wait_packet(".", dport=PORT, after=2)  # the client's kernel ACKs the FIN
    lab.wait_state(client_side, "TIME_WAIT")  # (it sends that ACK just before it moves)
    lab.wait_state(server_side, None)  # the server socket is gone
    lab.snapshot("after exit")


read_first = socklab.run(read_then_exit_client_newest)
socklab.show(read_first.trace())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke. The descriptor order is
# checked with plain code (the numbers themselves depend on what else the
# process has open).
SEED_PROGRAM = ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
                "server [P.]", "client [.]"]
FIN_EXCHANGE = ["server [F.]", "client [.]"]
RESET = ["client [R.]"]

END_OF_TEST = {"client": ("FIN_WAIT2", 1), "server": ("CLOSE_WAIT", 1)}
run.expect(
    flow=SEED_PROGRAM + FIN_EXCHANGE,
    states={
        "end of test": END_OF_TEST,
        "after exit": {"listener": None, "client": "TIME_WAIT", "server": None},
    },
)
ALL_GONE = {"listener": None, "client": None, "server": None}
client_newest.expect(
    flow=SEED_PROGRAM + RESET,
    states={"end of test": END_OF_TEST, "after exit": ALL_GONE},
    packets={7: {"flags": "R.", "seq": 2, "ack": 2}},  # the seed's R 2:2(0) ack 2
)
closed.expect(
    flow=SEED_PROGRAM + RESET,
    calls={"listener: close()": None, "client: close()": None, "server: close()": None},
    states={"after close": ALL_GONE},
)
read_first.expect(flow=SEED_PROGRAM + FIN_EXCHANGE, calls={"client: recv(1)": b"a"},
                  states={"after exit": {"client": "TIME_WAIT", "server": None}})


def descriptors(r):
    """The descriptor numbers of listener, client and server in run `r`."""
    return [r.call(f"{name}: fileno()").value for name in ("listener", "client", "server")]


listener_fd, client_fd, server_fd = descriptors(run)
if not listener_fd < client_fd < server_fd:
    raise socklab.ClaimError(
        f"the page says the descriptors ascend listener, client, server: {descriptors(run)}")
listener_fd, client_fd, server_fd = descriptors(client_newest)
if not client_fd > server_fd > listener_fd:
    raise socklab.ClaimError(
        "the page says the client's descriptor is then the newest (listener, client, "
        f"server: {descriptors(client_newest)})")
socklab.show(run.about())

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
# The first and the last run record no reset at all.
#
# The table below is the kernel's own account of the first of these runs:
# every state change of its sockets (the brief ones too); every reset sent,
# with the kernel's reason and the state of the socket that sent it where one
# did, and every reset taken; any segment the kernel dropped; and the TCP
# counters of the run's namespace that moved. Recorded as root only, like the
# reasons.
client_newest.expect(resets=[('client', 'TCP_ABORT_ON_CLOSE')])
closed.expect(resets=[('client', 'TCP_ABORT_ON_CLOSE')])
run.expect(resets=[])
read_first.expect(resets=[])
socklab.show(client_newest.events())

# %%
# .. admonition:: References
#
#    ``close(2)``, ``_exit(2)`` (the process's open file descriptors are
#    closed), ``shutdown(2)``, ``tcp(7)``, ``socket(7)``; RFC 9293 section 3.6.1
#    ("If such a host issues a CLOSE call while received data is still pending
#    in the TCP connection ... SHOULD send a RST to show that data was lost"),
#    RFC 2525 section 2.17 ("Failure to RST on close with data pending");
#    Linux commit c82199061009, "task_work: remove fifo ordering guarantee"
#    (2015).
