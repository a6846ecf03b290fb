"""
A lost FIN, sent again
======================

The client ends its side of the connection, and the link loses its FIN. The
server knows nothing: its socket stays ``ESTABLISHED``. The client's kernel,
which has not seen the FIN acknowledged, sends it again about a quarter of a
second later (a retransmission timeout on this 50 ms path), and the close
completes as if nothing had happened, a quarter of a second late. A FIN is
retransmitted like data: it occupies a sequence number and must be
acknowledged.
"""

# %%
# The scenario
# ------------
# The link drops the first FIN it sees (``lab.link.drop(predicate, count=1)``).
# The client ends its side with ``shutdown(SHUT_WR)``: the FIN that
# ``close()`` would send, while the program keeps the socket, so that the page
# can read the socket's ``TCP_INFO`` (what the kernel knows of its
# retransmissions) while the FIN is lost and after it is sent again. Then the
# usual end: the server reads end of file and closes, the client reads end of
# file and closes.
import socket

import socklab
from socklab import timers

PORT = 4321


def connected(lab):
    """A listener on the server host, a client connected to it across the link, the accepted socket."""
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    return listener, client, server


def lost_fin(lab, lost=1):
    listener, client, server = connected(lab)
    lab.link.drop(lambda p: "F" in p.flags, count=lost, name="the client's FIN")
    lab.call(client.shutdown, socket.SHUT_WR, label="shutdown(SHUT_WR)")
    lab.link.wait_packet("F.", sender="client", fate="dropped")
    lab.snapshot("the FIN lost")

    again = lab.link.wait_packet("F.", sender="client", after=lost)  # sent again
    lab.snapshot("the FIN sent again")
    lab.link.wait_settled(again)  # ... and across the link
    lab.wait_state(server, "CLOSE_WAIT")
    lab.wait_packet(".", sport=PORT)  # the server's ACK of it is back
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("the FIN arrived")

    lab.call(server.recv, 1024, label="recv")
    lab.call(server.close, label="close()")
    lab.call(client.recv, 1024, label="recv")
    lab.call(client.close, label="close()")
    lab.wait_packet(".", dport=PORT, after=1)  # the client's ACK of the server's FIN
    lab.wait_state(server, None)
    lab.snapshot("closed")


run = socklab.run(lost_fin, wire=socklab.Wire(delay=0.025))

# %%
# Socket states
# -------------
# With the FIN lost, the client is in ``FIN-WAIT-1`` with one sequence number
# unacknowledged (``Send-Q`` 1: the FIN) and its retransmission timer running
# (``on``); the server is still ``ESTAB``, with nothing to read. Once the FIN has
# been sent again: ``FIN-WAIT-2`` and ``CLOSE-WAIT``, as on any close. At the
# end, the client, which sent the first FIN, holds the ``TIME-WAIT`` socket.
socklab.show(run.states())

# %%
# What the client's socket says of itself (``TCP_INFO``) at the first three
# snapshots: its retransmission timeout, the segments sent and not
# acknowledged, how many retransmissions it has made in all, and how many in
# the current timeout episode.
for label in ("the FIN lost", "the FIN sent again", "the FIN arrived"):
    info = run.tcp_info(label)["client"]
    print(f"{label}: rto {info.rto / 1000:.0f} ms, unacked {info.unacked}, total_retrans {info.total_retrans}, "
          f"retransmits (this timeout episode) {info.retransmits}")

# %%
# Call results
# ------------
# Nothing here tells a program that a FIN was lost: ``shutdown()`` returned at
# once, the reads return ``b''`` as on any close.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The client's ``[F.]``, dropped by the link; the same ``[F.]`` (same sequence
# number) a quarter of a second later, delivered; then the server's ACK of it,
# its own FIN, and the client's last ACK.
socklab.show(run.trace())
FINS = [p for p in run.packets if p.flags == "F." and p.dport == PORT]
RETRANSMITTED_AFTER = (FINS[1].time_ns - FINS[0].time_ns) / 1e9
print(f"the FIN was sent again {RETRANSMITTED_AFTER * 1000:.0f} ms after it was first sent")

# %%
# Which timer sent it again? The kernel's counters say: a *tail loss probe*
# (``TcpExtTCPLossProbes``, RFC 8985), not a retransmission timeout
# (``TcpExtTCPTimeouts`` did not move). When the last segment in flight goes
# unacknowledged, Linux sends it again when a probe timer expires: twice the
# smoothed round trip, plus 200 ms for a lone segment, but never later than
# the retransmission timeout. On this path that is the RTO, 252 ms
# (``TCP_INFO``'s ``rto``: the 50 ms round trip plus RFC 6298's variance term,
# at least 200 ms on Linux); the kernel's timers fire on its clock ticks, and
# one this far ahead may fire some milliseconds late. The probe resets nothing: ``retransmits`` (the
# timeout episode) stays 0, ``total_retrans`` counts it.
socklab.show(run.ladder())

# %%
# The kernel's account
# --------------------
# The kernel's events of both hosts (recorded as root): the client's socket
# goes to ``TCP_FIN_WAIT1`` on ``shutdown()``, the ``tcp:tcp_retransmit_skb``
# event marks the FIN sent again in ``TCP_FIN_WAIT1``, and only then does the
# server's socket reach ``TCP_CLOSE_WAIT``.
socklab.show(run.events())

# %%
# When the probe is lost too
# --------------------------
# The same scenario with the link dropping the first two FINs: the probe is
# lost as well, and the retransmission timer fires. It retransmits the FIN,
# doubles its timeout (RFC 6298 section 5.5, "back off the timer"), and
# ``TCP_INFO`` shows the episode: ``retransmits`` 1, ``backoff`` 1, ``rto``
# doubled, until the ACK arrives and ``retransmits`` and ``backoff`` go back
# to 0.


def fin_and_probe_lost(lab):
    lost_fin(lab, lost=2)


run_twice = socklab.run(fin_and_probe_lost, wire=socklab.Wire(delay=0.025))
socklab.show(run_twice.trace())
FINS_TWICE = [p for p in run_twice.packets if p.flags == "F." and p.dport == PORT]
for before, fin in zip(FINS_TWICE, FINS_TWICE[1:], strict=False):
    print(f"FIN sent again {(fin.time_ns - before.time_ns) / 1e6:.0f} ms after the previous one")
for label in ("the FIN sent again", "the FIN arrived"):
    info = run_twice.tcp_info(label)["client"]
    print(f"{label}: rto {info.rto / 1000:.0f} ms, total_retrans {info.total_retrans}, "
          f"retransmits {info.retransmits}, backoff {info.backoff}")

# %%
# What this page claims
# ---------------------
# Checked against this build's runs: if the kernel does anything else, the
# build fails here and says which claim broke. The timing is claimed on the
# run's clock (the link's timestamps), with a tolerance: the probe after one
# RTO, the timer's retransmission one RTO after the probe.
RTO = run.tcp_info("the FIN lost")["client"].rto / 1e6
TOLERANCE = 0.06  # the timer wheel keeps a timer this far ahead to some tens of ms, and the machine may be busy
timers.within("the FIN sent again (a tail loss probe), one RTO after it was lost", FINS[0].time_ns, FINS[1].time_ns,
              RTO, TOLERANCE)
timers.within("the timer's retransmission, one RTO after the lost probe", FINS_TWICE[1].time_ns,
              FINS_TWICE[2].time_ns, run_twice.tcp_info("the FIN lost")["client"].rto / 1e6, TOLERANCE)


def episode(r, label):
    """(unacked, total_retrans, retransmits, backoff) of the client's TCP_INFO at a snapshot."""
    info = r.tcp_info(label)["client"]
    return info.unacked, info.total_retrans, info.retransmits, info.backoff


TCP_INFO_CLAIMS = {  # (run, snapshot): (unacked, total_retrans, retransmits, backoff)
    (run, "the FIN lost"): (1, 0, 0, 0), (run, "the FIN sent again"): (1, 1, 0, 0),
    (run, "the FIN arrived"): (0, 1, 0, 0),
    (run_twice, "the FIN sent again"): (1, 2, 1, 1), (run_twice, "the FIN arrived"): (0, 2, 0, 0),
}
for (r, label), want in TCP_INFO_CLAIMS.items():
    if episode(r, label) != want:
        raise socklab.ClaimError(f"{r.name}, {label!r}: the page says TCP_INFO (unacked, total_retrans, "
                                 f"retransmits, backoff) is {want}; the kernel says {episode(r, label)}")
CLOSE = ["server [.]", "server [F.]", "client [.]"]
run.expect(
    calls={"server: recv": b"", "client: recv": b""},
    flow=["client [S]", "server [S.]", "client [.]", "client [F.]", "client [F.]"] + CLOSE,
    packets={3: {"fate": "dropped", "seq": 1}, 4: {"fate": "delivered", "seq": 1}},
    states={
        "the FIN lost": {"client": {"state": "FIN_WAIT1", "send_q": 1, "timer": "on"}, "server": ("ESTAB", 0)},
        "the FIN arrived": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)},
        "closed": {"client": {"state": "TIME_WAIT", "timer": "timewait"}, "server": None},
    },
    counters={"client:TcpRetransSegs": 1, "client:TcpExtTCPLossProbes": 1, "client:TcpExtTCPTimeouts": 0},
    resets=[],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE"]},
)
run_twice.expect(
    flow=["client [S]", "server [S.]", "client [.]", "client [F.]", "client [F.]", "client [F.]"] + CLOSE,
    packets={3: {"fate": "dropped"}, 4: {"fate": "dropped"}, 5: {"fate": "delivered"}},
    counters={"client:TcpRetransSegs": 2, "client:TcpExtTCPLossProbes": 1, "client:TcpExtTCPTimeouts": 1},
    resets=[],
)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``shutdown(2)``, ``tcp(7)`` (``TCP_INFO``), RFC 9293 section 3.6 ("Closing a Connection":
#    a FIN is sent, and must be acknowledged, like data) and section 3.8.1 (retransmission
#    timeout), RFC 6298 (computing the RTO; section 5.5: back off the timer), RFC 8985 section
#    7 (the tail loss probe); ``net/ipv4/tcp_output.c`` (``tcp_schedule_loss_probe``,
#    ``tcp_send_loss_probe``), ``net/ipv4/tcp_timer.c`` (``tcp_retransmit_timer``).
