"""
Both sides close at once
========================

When both programs call ``close()`` before either FIN has arrived, the two
FINs cross on the link. Each kernel receives a FIN while its own is still
unacknowledged: both sockets go to ``CLOSING`` (RFC 9293's "simultaneous
close"), and when the ACKs arrive, both to ``TIME-WAIT``. Normally only the side
that closes first keeps a ``TIME-WAIT`` socket; here both do, for 60 s each.
"""

# %%
# The scenario
# ------------
# On loopback, or on a real network by luck, the two FINs cross only if both
# ``close()`` calls happen within one one-way delay of each other. The link makes
# it certain: it holds both FINs, then releases them together, and they cross.
# It also holds the two ACKs that answer them, long enough for a snapshot of
# both sockets in ``CLOSING`` (a state that otherwise lasts one one-way delay,
# 25 ms here).
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


def simultaneous_close(lab):
    listener, client, server = connected(lab)
    lab.snapshot("connected")
    lab.link.hold(lambda p: "F" in p.flags, count=2, name="the two FINs")
    lab.call(client.close, label="close()")
    lab.call(server.close, label="close()")
    lab.link.wait_held(2)
    lab.snapshot("both FINs on the link")

    lab.link.hold(lambda p: p.flags == ".", count=2, name="the two ACKs")
    lab.link.release()  # the FINs cross
    lab.link.wait_held(2)  # each kernel has answered the other's FIN with an ACK
    lab.wait_state(client, "CLOSING")
    lab.wait_state(server, "CLOSING")
    lab.snapshot("both FINs arrived")

    lab.link.release()
    lab.wait_packet(".", dport=PORT, after=1)  # the client's ACK, and
    lab.wait_packet(".", sport=PORT, after=0)  # the server's, have both arrived
    lab.wait_state(client, "TIME_WAIT")
    lab.wait_state(server, "TIME_WAIT")
    lab.snapshot("both ACKs arrived")


run = socklab.run(simultaneous_close, wire=socklab.Wire(delay=0.025))

# %%
# Socket states
# -------------
# With both FINs held on the link, each socket is in ``FIN-WAIT-1``: closed by
# its program, its FIN sent and not acknowledged. When the FINs have crossed,
# each socket has received a FIN that does not acknowledge its own:
# ``CLOSING``. When the ACKs have crossed, both are in ``TIME-WAIT``, with the
# kernel's 60 s ``timewait`` timer, on both hosts.
socklab.show(run.states())

# %%
# Call results
# ------------
# Both ``close()`` calls return at once: closing never waits for the peer
# (without ``SO_LINGER``).
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The trace lists packets as they *entered* the link: the two ``[F.]`` within
# a millisecond of each other (each sent by its own ``close()``), neither
# acknowledging the other (``ack 1``: each left before the other arrived); 25 ms
# later, two ``[.]``, each acknowledging the other side's FIN (``ack 2``: the
# FIN's sequence number plus one). The two ACKs come in the order the FINs
# arrived, a fraction of a millisecond apart; which ACK is listed first does
# not matter, and the page does not claim it.
socklab.show(run.trace())

# %%
# The ladder: the two FINs, held on the link and released together, cross in
# the middle; so do the two ACKs.
socklab.show(run.ladder())

# %%
# The paths through the state diagram
# ------------------------------------
# RFC 9293's Figure 5 has this path: ``FIN-WAIT-1`` to ``CLOSING`` on "rcv
# FIN, snd ACK", and ``CLOSING`` to ``TIME-WAIT`` on "rcv ACK of FIN". Both
# sockets take it. As root, once the lab records the kernel's events of both
# hosts, the paths are the kernel's own; elsewhere they are the tables' states.
PATH = ["ESTABLISHED", "FIN_WAIT1", "CLOSING", "TIME_WAIT"]
if run.kernel_events:
    paths = {"client": run.path("client"), "server": run.path("server")}
else:
    paths = {"client": socklab.state_path(PATH), "server": socklab.state_path(PATH)}
socklab.show(socklab.draw_state_diagram(highlight=paths))

# %%
# The kernel's account
# --------------------
# The kernel's events of both hosts (recorded as root): each socket goes
# ``TCP_ESTABLISHED`` -> ``TCP_FIN_WAIT1`` -> ``TCP_CLOSING`` and then, on the
# ACK, ``TCP_CLOSE``: the kernel swaps a closed socket that must wait for
# ``TIME_WAIT`` for a small timewait socket (``tcp_time_wait()``), which is what
# the last table shows on each host. No reset anywhere.
socklab.show(run.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
FLOW = run.flow()
if FLOW[:5] != ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [F.]"] or \
        sorted(FLOW[5:]) != ["client [.]", "server [.]"]:
    raise socklab.ClaimError(f"the page says: the handshake, two FINs, then one ACK from each side; the link "
                             f"carried {FLOW}")
run.expect(
    packets={3: {"ack": 1}, 4: {"ack": 1}, 5: {"ack": 2}, 6: {"ack": 2}},
    states={
        "both FINs on the link": {"client": "FIN_WAIT1", "server": "FIN_WAIT1"},
        "both FINs arrived": {"client": "CLOSING", "server": "CLOSING"},
        "both ACKs arrived": {"client": {"state": "TIME_WAIT", "timer": "timewait"},
                              "server": {"state": "TIME_WAIT", "timer": "timewait"}},
    },
    counters={"client:TcpExtTW": 1, "server:TcpExtTW": 1},
    resets=[],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "CLOSING", "CLOSE"]},
)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``close(2)``, ``tcp(7)``, RFC 9293 section 3.6 ("Closing a Connection", case 3: "both
#    users CLOSE simultaneously"; its Figure 13 shows this exchange) and Figure 5 (the state
#    diagram: FIN-WAIT-1 to CLOSING on "rcv FIN, snd ACK", CLOSING to TIME-WAIT on "rcv ACK of
#    FIN"); ``net/ipv4/tcp_input.c`` (``tcp_fin``: a FIN received in FIN-WAIT-1 moves the socket
#    to CLOSING), ``net/ipv4/tcp_minisocks.c`` (``tcp_time_wait``).
