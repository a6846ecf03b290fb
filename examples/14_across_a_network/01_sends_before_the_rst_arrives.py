"""
Server closes, client sends, 50 ms apart
========================================

The seed's central scenario, with the two programs on two hosts 25 ms apart:
the server closes, and the client goes on sending. Every ``send()`` the client
makes before the server's RST arrives succeeds, and every byte of them is lost;
only the sends made after it fail, with ``EPIPE``. "The first send succeeds,
the second fails" is what this looks like on loopback, where the RST comes back
within microseconds of the first send: the rule is about *when the RST
arrives*, not how many sends came before it.
"""

# %%
# The scenario
# ------------
# Plain socket code on two hosts: ``with lab.server:`` makes the listener on
# the server host, ``with lab.client:`` the client's socket on the client host
# (a socket stays on the host it was made on). ``run(..., wire=socklab.Wire(delay=0.025))``
# joins the hosts with a link that holds every packet for 25 ms.
#
# The server closes; the client waits until the server's FIN has arrived
# (``CLOSE-WAIT``) and its own kernel's ACK of that FIN has reached the server
# (``FIN-WAIT-2``), as on the seed's loopback page. Then it sends one byte; while
# the server's reset to it is on the link, two more; and one after the reset
# has arrived. So that the two sends fall inside the RST's trip in every build,
# however busy the machine, the link holds the RST until they are made, then
# lets it go (``lab.link.hold`` and ``release``: to the hosts, a held packet is
# only a slower one). A real program sends whenever it likes; what decides
# each send's fate is the same: did the RST arrive before it?
import socket

import socklab

PORT = 4321


def connected(lab):
    """A listener on the server host, a client connected to it across the link, the accepted socket."""
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    return listener, client, server


def sends_around_the_rst(lab, client):
    """One send; two while the server's RST is on the link; one after it arrived."""
    lab.link.hold(lambda p: p.flags == "R", count=1, name="the RST")  # on its way until released
    lab.call(client.send, b"1", socket.MSG_NOSIGNAL, label="send #1")
    lab.link.wait_held(1)  # the server's RST is on the link
    lab.call(client.send, b"2", socket.MSG_NOSIGNAL, label="send #2")
    lab.call(client.send, b"3", socket.MSG_NOSIGNAL, label="send #3")
    lab.snapshot("while the RST is on its way")
    lab.link.release()
    lab.wait_packet("R")  # the RST has left the link, into the client's host
    lab.wait_state(client, None)  # ... whose kernel dropped the connection
    lab.snapshot("after the RST arrived")
    lab.call(client.send, b"4", socket.MSG_NOSIGNAL, label="send #4")


def server_closes(lab):
    listener, client, server = connected(lab)
    lab.snapshot("connected")
    lab.call(server.close, label="close()")
    lab.wait_packet("F.")  # the server's FIN has crossed the link
    lab.wait_packet(".", dport=PORT, after=1)  # so has the client's ACK of it
    lab.wait_state(server, "FIN_WAIT2")  # ... and the server's kernel took it in
    lab.wait_state(client, "CLOSE_WAIT")
    lab.snapshot("after the server's close")
    sends_around_the_rst(lab, client)


run = socklab.run(server_closes, wire=socklab.Wire(delay=0.025))

# %%
# Socket states
# -------------
# One table for both hosts (the ``Host`` column). After the server's close,
# the client is in ``CLOSE-WAIT`` with the FIN unread (``Recv-Q`` 1) and the
# server's socket, which no program holds any more, in ``FIN-WAIT-2``. While the
# RST is on its way, the client's socket still exists and holds all three
# bytes in its ``Send-Q``: the first sent and unacknowledged, the other two not
# sent at all (Nagle's algorithm holds a small segment while an earlier one is
# unacknowledged). The server's socket is already gone: the timewait socket
# that sent the reset went with it. After the RST, nothing is left but the
# listener.
socklab.show(run.states())

# %%
# Call results
# ------------
# Three sends return 1, the fourth fails with ``EPIPE``. The three bytes that
# were accepted are lost: the first was answered with the RST, the other two were
# thrown away with the client's socket when the RST arrived (``tcp_reset()``
# purges the send queue). Below the table: when each send returned, against
# when the RST arrived at the client's host (milliseconds from the first packet).
socklab.show(run.results())
RST = next(p for p in run.packets if p.flags == "R")
SENDS = [run.call(f"send #{n}") for n in (1, 2, 3, 4)]
t0 = run.packets[0].time_ns
for call in SENDS:
    side = "before" if call.time_ns < RST.arrived_ns else "after"
    print(f"{call.label} returned {call.outcome} at {(call.time_ns - t0) / 1e6:7.1f} ms, "
          f"{side} the RST arrived ({(RST.arrived_ns - t0) / 1e6:.1f} ms)")

# %%
# Packet trace
# ------------
# The packets as each entered the link. The server's ``[F.]``, the client's
# ``[.]`` acknowledging it 25 ms later, the client's byte ``[P.]``, and the
# server's ``[R]``. Bytes 2 and 3 never appear: they were still in the client's
# send queue when the RST arrived.
socklab.show(run.trace())

# %%
# The ladder: each arrow slopes from the moment a packet entered the link to
# the moment it left it, 25 ms later (the RST's, a little longer: the link
# held it for the two sends). ``send #2`` and ``send #3`` sit on the
# client's line while the red RST is still crossing; ``send #4`` sits below
# its arrival.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's state diagram with each socket's path: the server's through
# ``FIN-WAIT-1`` and ``FIN-WAIT-2``, where the client's byte arrives
# (``rcv data after close()``); the client's from ``ESTABLISHED`` to
# ``CLOSE-WAIT``, ended by the reset. As root, once the lab records the kernel's
# events of both hosts, the paths are the kernel's own; elsewhere they are the
# tables' states.
SERVER_PATH = ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "rcv data after close()"]
CLIENT_PATH = ["ESTABLISHED", "CLOSE_WAIT", "rcv RST"]
if run.kernel_events:
    paths = {"client": run.path("client"), "server": run.path("server")}
else:
    paths = {"client": socklab.state_path(CLIENT_PATH), "server": socklab.state_path(SERVER_PATH)}
socklab.show(socklab.draw_state_diagram(highlight=paths))

# %%
# Why the RST: the kernel's account
# ---------------------------------
# The kernel's events of both hosts (recorded as root). When the client's ACK
# of the FIN reached the server's orphaned socket in ``TCP_FIN_WAIT1``, the
# kernel moved it to ``TCP_FIN_WAIT2`` and at once replaced it with a small
# timewait socket that keeps the connection in that state
# (``tcp_time_wait(sk, TCP_FIN_WAIT2, ...)`` in ``tcp_rcv_state_process``; the
# server's ``TcpExtTW`` counter counts it; the full socket's last event is
# ``TCP_CLOSE``). New data reaching the timewait socket gets a reset
# (``tcp_timewait_state_process``: "New data or FIN. If new data arrive after
# half-duplex close, reset"), with the reason ``TCP_TIMEWAIT_SOCKET``. The
# client's socket takes it in ``TCP_CLOSE_WAIT``, which is why its later
# ``send()`` fails with ``EPIPE`` (``tcp_reset()`` picks the errno by state).
# The line between says what became of the client's byte on the server's host:
# freed unread, the data the RST announces as lost.
socklab.show(run.events())

# %%
# When the ACK of the FIN comes late
# ----------------------------------
# The reason depends on timing. The client's kernel delays its ACK of a FIN
# (by a few milliseconds in these runs: a connection that received a FIN is
# treated as interactive, and the ACK waits a little in the hope of riding on
# data); a program that sends within that time sends its byte with the ACK on
# it, and the byte reaches the server's socket while it is still in
# ``FIN-WAIT-1``. This run makes that case certain: the link drops the
# client's separate ACK of the FIN, so the first thing the server's host hears
# from the client after its FIN is the byte, acknowledging the FIN on the way.


def ack_of_the_fin_lost(lab):
    listener, client, server = connected(lab)
    lab.link.drop(lambda p: p.flags == "." and not p.length, count=1, name="the client's ACK of the FIN")
    lab.call(server.close, label="close()")
    lab.wait_packet("F.")  # the FIN has crossed the link
    lab.wait_packet(".", dport=PORT, after=1)  # the client's ACK of it, which the link drops
    lab.wait_state(client, "CLOSE_WAIT")
    lab.snapshot("after the server's close")
    sends_around_the_rst(lab, client)


run_late = socklab.run(ack_of_the_fin_lost, wire=socklab.Wire(delay=0.025))

# %%
# The calls come out the same: three sends succeed while the RST is on its
# way, the fourth fails with ``EPIPE``. The server's socket was in
# ``FIN-WAIT-1`` when the client's byte arrived: the byte acknowledged the FIN
# and carried data for a socket whose program had closed it, and
# ``tcp_rcv_state_process`` ends such a socket on the spot (``tcp_done``) and
# resets the connection, reason ``TCP_ABORT_ON_DATA`` (the server's
# ``TcpExtTCPAbortOnData`` counter counts it), with no timewait socket at all.
# (The kernel's events show the socket in ``FIN-WAIT-2`` for an instant first:
# the byte's ACK of the FIN moves it there before its data ends it.)
socklab.show(run_late.results())
socklab.show(run_late.trace())
socklab.show(run_late.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke. The rule is claimed by the
# run's clock, not by a count: every send that returned before the RST's
# arrival succeeded, every send made after it failed.
for r in (run, run_late):
    rst = next(p for p in r.packets if p.flags == "R")
    sends = [r.call(f"send #{n}") for n in (1, 2, 3, 4)]
    early = [c.label for c in sends if c.time_ns < rst.arrived_ns]
    succeeded = [c.label for c in sends if c.errno is None]
    if early != succeeded or sends[-1].start_ns < rst.arrived_ns:
        raise socklab.ClaimError(
            f"{r.name}: the page says exactly the sends made before the RST arrived succeed; the sends "
            f"before it were {early}, those that succeeded {succeeded}")

HANDSHAKE = ["client [S]", "server [S.]", "client [.]"]
SENDS_CLAIMED = {"client: send #1": 1, "client: send #2": 1, "client: send #3": 1, "client: send #4": "EPIPE"}
run.expect(
    calls=SENDS_CLAIMED,
    flow=HANDSHAKE + ["server [F.]", "client [.]", "client [P.]", "server [R]"],
    states={
        "after the server's close": {"client": ("CLOSE_WAIT", 1), "server": "FIN_WAIT2"},
        "while the RST is on its way": {"client": {"state": "CLOSE_WAIT", "send_q": 3}},
        "after the RST arrived": {"client": None, "server": None},
    },
    counters={"server:TcpExtTW": 1, "server:TcpOutRsts": 1, "client:TcpEstabResets": 1},
    resets=[("server", "TCP_TIMEWAIT_SOCKET")],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]},
)
run_late.expect(
    calls=SENDS_CLAIMED,
    flow=HANDSHAKE + ["server [F.]", "client [.]", "client [P.]", "server [R]"],
    packets={4: {"fate": "dropped"}, 5: {"fate": "delivered", "ack": 2}},
    states={"after the server's close": {"client": ("CLOSE_WAIT", 1), "server": "FIN_WAIT1"}},
    counters={"server:TcpExtTW": 0, "server:TcpExtTCPAbortOnData": 1, "server:TcpOutRsts": 1},
    resets=[("server", "TCP_ABORT_ON_DATA")],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]},
)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``send(2)`` (``EPIPE``, ``MSG_NOSIGNAL``), ``tcp(7)`` (``TCP_NODELAY``: Nagle's
#    algorithm), RFC 9293 section 3.6.1 ("if new data is received after CLOSE is
#    called, its TCP implementation SHOULD send a RST to show that data was lost"),
#    section 3.10.7.4 (segments arriving in FIN-WAIT-1 and FIN-WAIT-2), RFC 1122
#    section 4.2.2.13 (a host that closes with data still to receive SHOULD send a
#    RST); ``net/ipv4/tcp_input.c`` (``tcp_rcv_state_process``, ``tcp_reset``),
#    ``net/ipv4/tcp_minisocks.c`` (``tcp_timewait_state_process``),
#    ``include/net/rstreason.h`` (the kernel's reset reasons).
