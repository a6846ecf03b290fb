"""
The timers, default and measured
================================

How long the kernel waits before it gives up on a silent peer, an
unanswered SYN, an idle connection with keep-alive on, an orphaned
``FIN-WAIT-2`` socket, and ``TIME-WAIT``. Each default is computed here the
way the kernel computes it; each timer that a setting can shorten is then
run, shortened, across two hosts whose link is told to drop what the peer
sends, and its time is measured on the run's clock and claimed with a
tolerance. ``TIME-WAIT`` cannot be shortened: its length is a constant.
"""

# %%
# What the defaults take
# ----------------------
# Computed from the formulas in ``net/ipv4/tcp_timer.c``
# (``tcp_model_timeout``: the time the retransmission timer takes to back off
# a number of times, doubling from a base up to 120 s), not copied from a
# book, from the settings of a fresh network namespace on the kernel that
# built this page: data gives up after ``tcp_retries2`` back-offs from
# 200 ms. A SYN is the exception the books miss: since Linux 6.5 its timer
# stays at 1 s for the first ``tcp_syn_linear_timeouts`` (4) expiries, and
# with the defaults ``connect()`` gives up after 11 SYNs and 131 s, not the
# 7 SYNs and 127 s that ``tcp(7)`` still describes (the shortened schedule is
# measured below).
import socket
import time

import matplotlib.pyplot as plt

import socklab
from socklab import timers

PORT = 4321
# a call's return is stamped in user space, after the kernel wakes the program: a loaded machine does so late
RETURN_LATE = 0.3
SETTINGS = ("tcp_retries2", "tcp_syn_retries", "tcp_syn_linear_timeouts", "tcp_keepalive_time",
            "tcp_keepalive_intvl", "tcp_keepalive_probes", "tcp_fin_timeout")


def read_defaults(lab):
    """The timers' settings of a fresh host (a new network namespace) on this kernel."""
    for name in SETTINGS:
        try:
            lab.record(name, int(lab.server.sysctl(f"net.ipv4.{name}")))
        except FileNotFoundError:  # tcp_syn_linear_timeouts: Linux 6.5 and later
            lab.record(name, 0)


d = socklab.run(read_defaults, wire=socklab.Wire(delay=0)).values
DEFAULTS = {
    f"unacknowledged data (tcp_retries2 = {d['tcp_retries2']})": timers.retries2_timeout(d["tcp_retries2"]),
    f"unanswered SYN (tcp_syn_retries = {d['tcp_syn_retries']}, tcp_syn_linear_timeouts = "
    f"{d['tcp_syn_linear_timeouts']})": timers.syn_schedule(d["tcp_syn_retries"], d["tcp_syn_linear_timeouts"])[1],
    f"idle, keep-alive on ({d['tcp_keepalive_time']} s + {d['tcp_keepalive_probes']} x {d['tcp_keepalive_intvl']} s)":
        timers.keepalive_timeout(d["tcp_keepalive_time"], d["tcp_keepalive_intvl"], d["tcp_keepalive_probes"]),
    f"orphaned FIN-WAIT-2 (tcp_fin_timeout = {d['tcp_fin_timeout']})": float(d["tcp_fin_timeout"]),
    "TIME-WAIT (TCP_TIMEWAIT_LEN, a constant)": timers.TIMEWAIT_LEN,
}
socklab.show(socklab.Table("the defaults", ["timer", "gives up after"],
                           [[what, f"{seconds:g} s ({seconds / 60:.1f} min)"] for what, seconds in DEFAULTS.items()]))

# %%
# A peer that stops answering data
# --------------------------------
# The server's host goes silent (the link drops everything it sends) while
# the client has a byte in flight. With ``tcp_retries2`` set to 1 on the
# client's host, the kernel allows ``tcp_model_timeout(1, 200 ms)`` = 0.6 s,
# counted from the first retransmission by the retransmission timer
# (``retrans_stamp``). It checks only when that timer fires, so the
# connection dies at the first expiry at or after 0.6 s. The timer's period
# is the connection's RTO, about 200 ms plus the round trip (RFC 6298), and
# doubles at each expiry.
RETRIES2 = 1


def silent_peer_while_sending(lab):
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    lab.link.drop(socklab.sent_by(lab.server), name="the server is silent")
    lab.call(client.send, b"a", label="send")
    lab.call(client.recv, 1, label="recv")  # blocks until the kernel gives up


data_run = socklab.run(silent_peer_while_sending, wire=socklab.Wire(delay=0.01, client={"tcp_retries2": RETRIES2}))
copies = [p for p in data_run.packets if p.length and p.sport != PORT]  # the byte, each time it was sent
died = data_run.call("client: recv").time_ns
allowed = timers.model_timeout(RETRIES2)
# copies[1] is the tail loss probe (the counter TCPLossProbes says so below), not the RTO timer's;
# the timer's first retransmission is copies[2], and its period doubles from there
rto = (copies[2].time_ns - copies[1].time_ns) / 1e9
expiries = [copies[2].time_ns + round(sum(timers.backoff(rto, n)[1:]) * 1e9) for n in range(1, 8)]
predicted = next(t for t in expiries if (t - copies[2].time_ns) / 1e9 >= allowed)
measured = timers.within("recv() failing, from the first send", copies[0].time_ns, died,
                         (predicted - copies[0].time_ns) / 1e9, RETURN_LATE)
print("the byte left at +0 s, then at " + ", ".join(f"+{(p.time_ns - copies[0].time_ns) / 1e9:.3f} s"
                                                      for p in copies[1:])
      + f"; the RTO was {rto * 1000:.0f} ms; allowed {allowed:g} s after the first RTO retransmission; "
        f"recv() failed at +{measured:.3f} s")
socklab.show(data_run.results(), data_run.trace())

# %%
# The trace shows the byte sent, then sent again a little over 200 ms later:
# not by the retransmission timer but by the tail loss probe (RFC 8985),
# which resends the last segment when its ACK is overdue (the kernel's
# ``TCPLossProbes`` counter, claimed at the end of the page, says it fired
# once). Then the retransmission timer's copies, the gap doubling each time.
# ``recv()`` fails with ``ETIMEDOUT`` at the first expiry 0.6 s or more after
# the timer's first copy. The client's kernel sends nothing as it gives up:
# unlike keep-alive below, a retransmission timeout ends the connection
# without a reset. (The RST at the end of the trace is the server's, sent
# when the scenario ended and its socket was closed with the byte unread:
# the kernel's reason ``TCP_ABORT_ON_CLOSE``; the link drops it like
# everything else from the server.) With the
# default ``tcp_retries2`` of 15 the same schedule runs for 924.6 s or more:
# about 15 minutes.
socklab.show(data_run.ladder())

# %%
# An unanswered SYN
# -----------------
# The server's host drops every SYN (a firewall). With ``tcp_syn_retries`` set
# to 1 (the smallest value the kernel accepts) on the client's host, the
# kernel allows ``tcp_model_timeout(1, 1 s)`` = 3 s from the first SYN
# (``TCP_TIMEOUT_INIT``: no round trip has been measured yet). The timer
# keeps its 1 s (the linear timeouts), so the SYN leaves at 0, 1 and 2 s,
# and at the expiry at 3 s ``connect()`` fails with ``ETIMEDOUT``.


def dropped_syns(lab):
    with lab.server:
        socket.create_server(("0.0.0.0", PORT))
    lab.link.drop(lambda p: p.flags == "S", name="a firewall drops SYNs")
    with lab.client:
        client = socket.socket()
    lab.call(client.connect, (lab.server.ipv4, PORT), label="connect")


syn_run = socklab.run(dropped_syns, wire=socklab.Wire(delay=0.01, client={"tcp_syn_retries": 1}))
connect = syn_run.call("client: connect")
syn_sent, syn_gives_up = timers.syn_schedule(1, d["tcp_syn_linear_timeouts"])
syn_measured = timers.within("connect() with tcp_syn_retries = 1", connect.start_ns, connect.time_ns,
                             syn_gives_up, RETURN_LATE)
for n, (packet, planned) in enumerate(zip(syn_run.packets[1:], syn_sent, strict=True), start=1):
    timers.within(f"SYN retransmission #{n}", syn_run.packets[0].time_ns, packet.time_ns, planned, 0.1)
socklab.show(syn_run.results(), syn_run.trace())

# %%
# An idle connection with keep-alive
# ----------------------------------
# The client turns keep-alive on with the shortest settings (1 s idle, a probe
# every 1 s, give up after 1 unanswered probe); then the server's host goes
# silent. The first probe leaves after 1 s of idleness: an ACK whose
# sequence number is one below the next byte, so it carries nothing new and a
# live peer must answer it. Its answer is dropped, and the kernel gives up
# 1 s later: ``recv()`` fails with ``ETIMEDOUT`` about 2 s after the last
# packet, and the client's kernel sends an RST as it lets the connection go
# (the kernel's reason: ``TCP_KEEPALIVE_TIMEOUT``, in the events below).


def silent_peer_while_idle(lab):
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 1)
    lab.link.drop(socklab.sent_by(lab.server), name="the server is silent")
    lab.call(client.recv, 1, label="recv")
    lab.link.wait_packet("R.", sender="client")  # sent as the kernel gives up: it may reach the link later


idle_run = socklab.run(silent_peer_while_idle, wire=socklab.Wire(delay=0.01))
last = idle_run.packets[2]  # the handshake's last ACK: the connection is idle from here
idle_measured = timers.within("recv() with keep-alive 1 s + 1 x 1 s", last.time_ns,
                              idle_run.call("client: recv").time_ns, timers.keepalive_timeout(1, 1, 1), RETURN_LATE)
socklab.show(idle_run.results(), idle_run.trace(), idle_run.events())

# %%
# An orphaned FIN-WAIT-2 socket
# -----------------------------
# The client closes; the server's program never does. The client's socket,
# which no program holds any more, waits in ``FIN-WAIT-2`` for a FIN that
# never comes, for ``tcp_fin_timeout`` seconds (set to 1 on the client's
# host), then the kernel drops it without sending anything. When the
# server's program closes its socket at last, its FIN reaches a client host
# with no connection left, which answers with an RST (the kernel's reason
# ``NO_SOCKET``, claimed at the end of the page).


def orphan(lab):
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    lab.call(client.close, label="close")
    lab.wait_state(client, "FIN_WAIT2")
    lab.snapshot("after close")
    lab.wait_state(client, None, timeout=5)
    lab.record("gone", time.time_ns())
    lab.snapshot("after tcp_fin_timeout")
    lab.call(server.close, label="close")  # at last: its FIN finds no connection
    lab.wait_packet("R")


fin_run = socklab.run(orphan, wire=socklab.Wire(delay=0.01, client={"tcp_fin_timeout": 1}))
fin_measured = timers.within("orphaned FIN-WAIT-2 with tcp_fin_timeout = 1", fin_run.call("client: close").time_ns,
                             fin_run.value("gone"), 1.0, RETURN_LATE)
socklab.show(fin_run.states(), fin_run.trace())

# %%
# TIME-WAIT cannot be shortened
# -----------------------------
# The side that closes first ends in ``TIME-WAIT`` for ``TCP_TIMEWAIT_LEN``,
# 60 s, a constant of the kernel (RFC 9293's 2 MSL would be 4 minutes). No
# sysctl changes it: ``tcp_fin_timeout`` is the orphaned ``FIN-WAIT-2``
# timer, whatever its name suggests: this run sets it to 1 s on the client's
# host, and the timer column still shows 60 s left just after the socket
# entered ``TIME-WAIT``.


def time_wait(lab):
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    lab.call(client.close, label="close")
    lab.wait_state(server, "CLOSE_WAIT")
    lab.call(server.close, label="close")
    lab.wait_state(client, "TIME_WAIT")
    lab.snapshot("after both closed")


tw_run = socklab.run(time_wait, wire=socklab.Wire(delay=0.01, client={"tcp_fin_timeout": 1}))
tw_row = next(r for r in tw_run.snapshot("after both closed").rows if r.state is socklab.State.TIME_WAIT)
socklab.show(tw_run.states())

# %%
# Default against measured
# ------------------------
# Each timer's default (light) and this build's shortened run (dark), on a
# logarithmic scale: from seconds to hours.
measured_runs = [(measured, f"tcp_retries2 = {RETRIES2}"), (syn_measured, "tcp_syn_retries = 1"),
                 (idle_measured, "1 s + 1 x 1 s"), (fin_measured, "tcp_fin_timeout = 1"),
                 (tw_row.timer_ms / 1000, "cannot be shortened: time left read just after")]
rows = [(what.split(" (")[0], default, run_s, setting)
        for (what, default), (run_s, setting) in zip(DEFAULTS.items(), measured_runs, strict=True)]
fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
fig.patch.set_facecolor("#f6f8fa")
ax.set_facecolor("#f6f8fa")
for i, (_what, default, run_s, setting) in enumerate(rows):
    ax.barh(i + 0.2, default, height=0.38, color="#9ec5fe")
    ax.barh(i - 0.2, run_s, height=0.38, color="#0550ae")
    ax.text(default * 1.15, i + 0.2, f"{default:g} s", va="center", fontsize=9, color="#1f2328")
    ax.text(run_s * 1.15, i - 0.2, f"{run_s:.2f} s ({setting})", va="center", fontsize=9, color="#1f2328")
ax.set_xscale("log")
ax.set_xlim(0.5, 2e5)
ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=10)
ax.invert_yaxis()
ax.set_xlabel("seconds (log scale)")
ax.set_title("Bar chart, logarithmic: each timer's default and this build's shortened run. " + "; ".join(
    f"{w}: default {d:g} s, measured {m:.2f} s" for w, d, m, _ in rows) + ".", loc="left", visible=False)
socklab.show(fig)

# %%
# What this page claims
# ---------------------
# The times above are claimed with tolerances (the build fails outside them);
# these are the outcomes and what crossed the link.
data_run.expect(calls={"client: send": 1, "client: recv": "ETIMEDOUT"},
                resets=[("server", "TCP_ABORT_ON_CLOSE")],  # the server's socket closed with the byte unread
                counters={"client:TcpExtTCPLossProbes": 1, "client:TcpExtTCPTimeouts": len(copies) - 1})
assert (copies[-1].time_ns - copies[2].time_ns) / 1e9 < allowed <= (died - copies[2].time_ns) / 1e9, copies
# nothing from the client after its last copy: no RST when a retransmission timeout ends a connection
assert [p.flags for p in data_run.packets if p.sport != PORT and p.time_ns > copies[-1].time_ns] == []
syn_run.expect(calls={"client: connect": "ETIMEDOUT"}, flow=["client [S]"] * (1 + len(syn_sent)),
               packets={i: {"fate": "dropped"} for i in range(1 + len(syn_sent))})
probe = idle_run.packets[3]
idle_run.expect(calls={"client: recv": "ETIMEDOUT"},
                # the probe: an ACK whose sequence number is one below the next byte (it carries nothing new,
                # so a live peer must answer it); the answer dropped; the client's RST as it gives up
                packets={3: {"flags": ".", "seq": 0, "sport": probe.sport}, 4: {"flags": ".", "fate": "dropped"},
                         5: {"flags": "R.", "sport": probe.sport}},
                resets=[("client", "TCP_KEEPALIVE_TIMEOUT")])
fin_run.expect(states={"after close": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)},
                       "after tcp_fin_timeout": {"client": None, "server": ("CLOSE_WAIT", 1)}},
               calls={"server: close": None},
               resets=[("no socket", "NO_SOCKET")])  # the server's FIN finds no connection on the client's host
assert 58_000 <= tw_row.timer_ms <= 60_000, tw_row
for run in (data_run, syn_run, idle_run, fin_run, tw_run):
    socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``tcp(7)`` (``tcp_retries2``, ``tcp_syn_retries``, ``tcp_keepalive_time``,
#    ``tcp_keepalive_intvl``, ``tcp_keepalive_probes``, ``tcp_fin_timeout``,
#    ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT``); ``net/ipv4/tcp_timer.c``
#    (``tcp_model_timeout``, ``retransmits_timed_out``, ``tcp_write_timeout``,
#    ``tcp_keepalive_timer``); ``include/net/tcp.h`` (``TCP_RTO_MIN``, ``TCP_RTO_MAX``,
#    ``TCP_TIMEOUT_INIT``, ``TCP_TIMEWAIT_LEN``); RFC 6298 (computing the RTO); RFC 9293
#    section 3.8.3 (user timeout), 3.6.1 (TIME-WAIT and 2 MSL); RFC 1122 section
#    4.2.3.6 (keep-alives).
