"""
A server that never closes
==========================

When a server reads the client's end of file and never calls ``close()``, its
socket stays in ``CLOSE-WAIT``, ``Recv-Q`` 1, for as long as the program lives:
no timer ends it. The client's side, closed, waits in ``FIN-WAIT-2`` for a FIN
that never comes, and its kernel gives up after ``net.ipv4.tcp_fin_timeout``
(60 s by default; 1 s here) and forgets the connection. The server learns
nothing of that until it finally sends something, which draws an RST. Two
more runs show the default timeout, and a client that still holds its
socket: that one waits in ``FIN-WAIT-2`` for ever.
"""

# %%
# The scenario
# ------------
# A client connects and closes; the server never calls ``close()``. The run
# sets ``net.ipv4.tcp_fin_timeout`` to 1 second so that the client's side
# gives up in a second instead of a minute: the scenario runs in its own
# network namespace, which has its own copy of this setting (root in that
# namespace may write it, also when socklab runs unprivileged inside a user
# namespace), so the host's value is not touched: ``lab.sysctl`` writes only
# the run's own, and where a run has no namespace of its own, its scenario
# stops there and says so. ``lab.wait_state`` waits for
# the client's socket to leave the table, with a deadline, instead of
# sleeping. At the end the server reads (``b''``: it could have known) and,
# far too late, closes.
import select
import socket

import socklab

PORT = 4321
FIN_TIMEOUT = "net.ipv4.tcp_fin_timeout"


def never_closes(lab):
    lab.sysctl(FIN_TIMEOUT, 1)  # this namespace's /proc/sys/net/ipv4/tcp_fin_timeout
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()

    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT)  # the server's kernel ACKs the FIN
    lab.wait_state(client, "FIN_WAIT2")  # ... and the client's kernel took the ACK in
    lab.snapshot("after the client's close")

    lab.wait_state(client, None, timeout=5)  # the client's kernel gives up on it
    lab.snapshot("client side gone")

    lab.call(server.recv, 100, label="recv")  # what the server could have read all along
    lab.snapshot("server still open")

    lab.call(server.close, label="close(), at last")
    lab.wait_packet("R", dport=PORT)  # nobody is left on the client's port
    lab.wait_state(server, None)
    lab.snapshot("after the server's close")


run = socklab.run(never_closes)

# %%
# Socket states
# -------------
# After the client's ``close()``: the client in ``FIN-WAIT-2``, the server in
# ``CLOSE-WAIT`` with ``Recv-Q`` 1 (the FIN, one sequence number nobody has
# read). Look at the client's ``Timer`` column: ``timewait``, about a second.
# The client's program has closed its socket, so nobody can ever read from it
# again; Linux keeps such an orphan in ``FIN-WAIT-2`` only for
# ``tcp_fin_timeout`` (or 3.5 retransmission timeouts, if that is longer: the
# kernel's ``tcp_fin_time()``; the 1 s measured below shows that here
# ``tcp_fin_timeout`` was the longer), and holds it
# meanwhile as a light-weight time-wait socket that ``ss`` still shows as
# ``FIN-WAIT-2`` (so with ``tcp_fin_timeout`` at 60 s or less, as here). A second later the client's
# side is gone, and the server's ``CLOSE-WAIT`` is unchanged: it stays until
# the server's program calls ``close()``. The server's ``recv()`` returns
# ``b''``, the end of file that had been waiting since the first table:
# reading it empties ``Recv-Q`` (the FIN has been read), but the state stays
# ``CLOSE-WAIT``. Only ``close()`` ends it. So a leaked socket may show
# ``Recv-Q`` 1 (the program never read the end of file) or 0 (it read it, and
# still did not close).
socklab.show(run.states())
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The handshake, the client's ``[F.]`` and the server's ``[.]``, then
# nothing for a second: the client's kernel drops its side without a packet.
# When the server finally closes, its ``[F.]`` reaches a port where no socket
# is left, and the client's kernel answers it with ``[R]`` (the kernel's
# reason, checked at the end of the page: ``NO_SOCKET``). The reset ended
# the server's socket; it changes nothing for anyone, but it is the only
# packet that says the client's side had forgotten the connection.
socklab.show(run.trace())

# %%
# The ladder: the client's FIN and, a second later in time (the ladder
# shows order, not time), the server's, answered by the red reset.
socklab.show(run.ladder())

# %%
# How long, measured
# ------------------
# The client's side was gone one ``tcp_fin_timeout`` after its kernel took in
# the server's ACK: measured from the capture time of that ACK to the first
# snapshot without the socket (``lab.wait_state`` polls the table at most
# 10 ms apart, so the snapshot comes a little after the socket's end). A
# kernel timer never fires early, but it may fire late (the timer wheel
# rounds long timeouts up), and a busy machine adds its own delay: the claim
# allows 1.0 to 1.3 s.
with run.claim("the orphan's timer shows about a second, and it ends 1.0 to 1.3 s after the ACK of its FIN"):
    ack = run.packets[4]
    gone = run.snapshot("client side gone").time_ns
    orphan_seconds = (gone - ack.time_ns) / 1e9
    orphan = run.states_at("after the client's close")["client"]
    print(f"tcp_fin_timeout was {run.value(f'{FIN_TIMEOUT} before')} s in the new namespace, set to "
          f"{run.value(FIN_TIMEOUT)} s; the orphan's timer showed {orphan.timer_ms} ms; "
          f"it was gone {orphan_seconds:.3f} s after the ACK of its FIN")
    assert 0 < (orphan.timer_ms or 0) <= 1000, f"its timer shows {orphan.timer}"
    assert 1.0 <= orphan_seconds <= 1.3, f"it took {orphan_seconds:.3f} s"

# %%
# With the default
# ----------------
# The same run with the namespace's default ``tcp_fin_timeout`` (60 s), up to
# the first table: the client's orphan now shows about 60 s on its timer. It
# would have stayed that long, and the server's ``CLOSE-WAIT`` longer still:
# for ever, if the server never closes.


def default_fin_timeout(lab):
    lab.sysctl(FIN_TIMEOUT)  # read, and recorded
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()
    lab.call(client.close, label="close()")
    lab.wait_packet(".", sport=PORT)
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("after the client's close")


default = socklab.run(default_fin_timeout)
socklab.show(default.states())
default_orphan = default.states_at("after the client's close")["client"]

# %%
# A client that is still open
# ---------------------------
# ``tcp_fin_timeout`` only ends sockets that no program holds any more. A
# client that sends its request, calls ``shutdown(SHUT_WR)`` and waits for
# the reply is in ``FIN-WAIT-2`` too, but its socket is open, and the kernel
# leaves it there: the run below, still with ``tcp_fin_timeout`` at 1 s,
# polls the client for input for 1.5 s, longer than the timeout, and nothing
# comes.


def client_still_open(lab):
    lab.sysctl(FIN_TIMEOUT, 1, required=False)  # (the run can go on without it: the tables hold anyway)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    server, _ = listener.accept()

    lab.call(client.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.wait_packet(".", sport=PORT)
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("after the client's shutdown")
    lab.wait_poll(client, select.POLLIN, timeout=1.5, label="poll(POLLIN), 1.5 s")
    lab.snapshot("1.5 s later")


still_open = socklab.run(client_still_open)

# %%
# The client's ``FIN-WAIT-2`` row has no timer this time, ``poll()`` returned
# no event (``0``), and 1.5 s later both rows are unchanged: the client would
# wait for as long as the server keeps its ``CLOSE-WAIT``, which is for ever.
# Nothing was sent during the wait either. A client that waits like this
# needs a timeout of its own. (The run's trace ends with two FINs: the
# scenario's sockets are closed when it returns.)
socklab.show(still_open.states(), still_open.results())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    values={f"{FIN_TIMEOUT} before": "60", FIN_TIMEOUT: "1"},
    calls={"client: close()": None, "server: recv": b"", "server: close(), at last": None},
    flow=["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
          "server [F.]", "client [R]"],
    states={
        "after the client's close": {"client": {"state": "FIN_WAIT2", "timer": "timewait"},
                                     "server": ("CLOSE_WAIT", 1)},
        "client side gone": {"client": None, "server": ("CLOSE_WAIT", 1)},
        "server still open": {"server": ("CLOSE_WAIT", 0)},
        "after the server's close": {"server": None},
    },
    packets={4: {"flags": ".", "sport": PORT}},
)
run.expect(resets=[("no socket", "NO_SOCKET")])  # the [F.] found no socket to take it
default.expect(
    values={FIN_TIMEOUT: "60"},
    states={"after the client's close": {"client": {"state": "FIN_WAIT2", "timer": "timewait"},
                                         "server": ("CLOSE_WAIT", 1)}},
)
STILL_OPEN = {"client": {"state": "FIN_WAIT2", "timer": ""}, "server": ("CLOSE_WAIT", 1)}
still_open.expect(
    values={FIN_TIMEOUT: "1"},
    calls={"client: shutdown(SHUT_WR)": None, "client: poll(POLLIN), 1.5 s": "0"},
    states={"after the client's shutdown": STILL_OPEN, "1.5 s later": STILL_OPEN},
)
later = still_open.snapshot("1.5 s later").time_ns
with still_open.claim("nothing was sent after the ACK of the client's FIN, up to the last table"):
    during = [f for f, p in zip(still_open.flow(), still_open.packets, strict=True) if p.time_ns < later]
    assert during == ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]"], during
with still_open.claim("the client stayed in FIN-WAIT-2 longer than 1.5 s, longer than tcp_fin_timeout"):
    waited = (later - still_open.packets[4].time_ns) / 1e9
    assert waited > 1.5 > int(still_open.value(FIN_TIMEOUT)), f"it was {waited:.3f} s"
with default.claim("the default orphan's timer started at 60 s: it shows 60 s less at most the time since close()"):
    # the timer starts after close() began; a busy machine only makes the table later, not the timer longer
    since_close = (default.snapshot("after the client's close").time_ns - default.call("close()").start_ns) / 1e6
    assert default.value(FIN_TIMEOUT) == "60", default.value(FIN_TIMEOUT)
    assert 60_000 - since_close - 10 <= (default_orphan.timer_ms or 0) <= 60_000, (
        f"it shows {default_orphan.timer}, {since_close:.0f} ms after close() began")
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``tcp(7)``: ``tcp_fin_timeout`` ("This specifies how many seconds to wait
#    for a final FIN packet before the socket is forcibly closed. This is
#    strictly a violation of the TCP specification, but required to prevent
#    denial-of-service attacks. ... The default value is 60 seconds.");
#    ``close(2)``, ``recv(2)`` (a return value of 0: "the peer has performed an
#    orderly shutdown"); RFC 9293 section 3.6 (CLOSE-WAIT: "waiting for a
#    connection termination request from the local user") and section 3.10.7.1
#    (a segment to a CLOSED connection draws a reset).
