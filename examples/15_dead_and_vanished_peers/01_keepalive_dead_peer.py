"""
A dead peer while idle: keepalive
=================================

A connection that carries nothing says nothing: if the server's host dies
(power cut, cable pulled, a virtual machine gone), the client's idle socket
stays ``ESTABLISHED`` and its blocked ``recv()`` waits for ever. Keepalive
(``SO_KEEPALIVE``) makes the client's kernel probe an idle connection; when
the probes go unanswered it gives up, the waiting ``recv()`` fails with
``ETIMEDOUT``, and the kernel sends a reset (which, here, nobody receives).
The defaults take over two hours; this run shortens them to three seconds
with the per-socket options ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL`` and
``TCP_KEEPCNT``.
"""

# %%
# The scenario
# ------------
# Two hosts joined by a link with 10 ms each way (``socklab.Wire``): a server
# on 192.0.2.2 and a client on 192.0.2.1 that connects and then sits idle,
# waiting in ``recv()`` for a reply that will never come. Before it waits,
# the client turns keepalive on: first probe after 1 s of silence, then one
# every second, give up after 2 unanswered probes. Then the link is cut
# (``lab.link.cut()``): from now on every frame is lost, in both directions,
# as if the server's host had been switched off. Its socket still exists;
# nothing it does reaches the client any more.
import socket

import socklab
from socklab import timers

PORT = 4321
IDLE, INTERVAL, COUNT = 1, 1, 2  # seconds of silence, seconds between probes, probes
KEEPALIVE_SYSCTLS = ("tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes")


def dead_while_idle(lab):
    with lab.server:
        listener = socket.create_server(("0.0.0.0", PORT))
    with lab.client:
        client = socket.create_connection((lab.server.ipv4, PORT))
    server, _ = listener.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, IDLE)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, INTERVAL)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, COUNT)
    lab.snapshot("idle, keepalive on")

    lab.link.cut()  # the server's host is gone: nothing crosses the link any more
    lab.link.wait_packet(".", sender="client", after=1, timeout=3)  # the first probe (after the handshake's ACK)
    lab.snapshot("first probe sent")
    lab.call(client.recv, 1024, label="recv()")  # blocks until keepalive gives up
    lab.link.wait_packet("R.", sender="client", fate="cut")  # sent as it gives up; may reach the link later
    lab.snapshot("after recv()")

    for name in KEEPALIVE_SYSCTLS:  # the defaults, on the host whose sysctls the run left alone
        lab.record(name, int(lab.server.sysctl(name)))
    server.close()  # the scenario ends: its FIN is lost on the cut link like the rest
    lab.link.wait_packet("F.", sender="server", fate="cut")


run = socklab.run(dead_while_idle, wire=socklab.Wire(delay=0.010))

# %%
# Socket states
# -------------
# One table for both hosts (the ``Host`` column). While idle, the client's
# socket carries the ``keepalive`` timer (``ss -o`` spelling: the time left,
# then the number of probes sent so far). After the first probe the counter
# is 1. After ``recv()`` failed, the client's socket is gone, while the
# server's is still ``ESTAB``: nothing told the server anything. Had its host
# really died, that socket would have died with it; if the link came back,
# it would be a half-open connection
# (:ref:`a page of its own <sphx_glr_auto_examples_15_dead_and_vanished_peers_03_half_open.py>`).
socklab.show(run.states())

# %%
# Call results
# ------------
# ``recv()`` fails with ``ETIMEDOUT`` ("Connection timed out"): the error the
# keepalive timer leaves on the socket when it gives up (``tcp_write_err()``
# in ``net/ipv4/tcp_timer.c``). A program that never reads would learn it
# from its next ``send()``, or from ``poll()`` reporting ``POLLERR``.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The handshake, then silence on the wire for one second, then the
# client's two probes, one second apart, and its ``[R.]`` as it gives up;
# every frame after the cut is marked lost. A probe is an ACK with no data
# whose sequence number is one *below* the next byte to send (relative
# ``seq 0``, where the handshake left the client at 1; tcpdump does not print
# the sequence number of an empty segment): outside the server's window, so
# a live peer answers it with an ACK (RFC 1122 section 4.2.3.6: "the probe
# causes the receiver to return an acknowledgment segment"). The server's
# ``[F.]`` at the end is the scenario closing its sockets.
socklab.show(run.trace())

# %%
# The timing, measured on the run's clock (the link stamps each frame as it
# enters). The idle time counts from the last segment the client
# *received* (the SYN-ACK), not from the last it sent: the kernel's
# ``keepalive_time_elapsed()``. Each timer fires a little late (the kernel's
# timer wheel rounds a 1 s timeout up by up to some tens of milliseconds),
# so the page claims each time within 0.3 s.
packets = run.packets
received = packets[1].arrived_ns  # the SYN-ACK reached the client
recv_call = run.call("client: recv()")
first_probe = timers.within("first probe, TCP_KEEPIDLE after the last segment received",
                            received, packets[3].time_ns, IDLE, 0.3)
between = timers.within("second probe, TCP_KEEPINTVL after the first", packets[3].time_ns, packets[4].time_ns,
                        INTERVAL, 0.3)
gave_up = timers.within("ETIMEDOUT, TCP_KEEPIDLE + TCP_KEEPCNT * TCP_KEEPINTVL after the last segment received",
                        received, recv_call.time_ns, timers.keepalive_timeout(IDLE, INTERVAL, COUNT), 0.3)
print(f"first probe {first_probe:.3f} s after the SYN-ACK arrived, second {between:.3f} s later, "
      f"ETIMEDOUT {gave_up:.3f} s after the SYN-ACK (set: {IDLE} + {COUNT} x {INTERVAL} = "
      f"{IDLE + COUNT * INTERVAL} s)")

# %%
# The same with this kernel's defaults
# ------------------------------------
# Without the three socket options, keepalive takes its times from the
# host's sysctls, read here from the server host, whose settings the run
# left alone: ``tcp_keepalive_time``, ``tcp_keepalive_intvl`` and
# ``tcp_keepalive_probes``. The same rule gives the time a dead peer takes
# to be noticed on an idle connection with ``SO_KEEPALIVE`` alone: over two
# hours. Without ``SO_KEEPALIVE`` it is never noticed. (Computed, not run:
# the build does not wait two hours; the shortened run above is what checks
# the rule. :ref:`The timers page <sphx_glr_auto_examples_16_timers_01_timer_schedules.py>`
# puts this default beside the kernel's other timers.)
default_idle, default_interval, default_count = (run.value(name) for name in KEEPALIVE_SYSCTLS)
default_total = round(timers.keepalive_timeout(default_idle, default_interval, default_count))
hours, rest = divmod(default_total, 3600)
print(f"tcp_keepalive_time {default_idle} s + tcp_keepalive_probes {default_count} x tcp_keepalive_intvl "
      f"{default_interval} s = {default_total} s ({hours} h {rest // 60} min {rest % 60} s)")

# %%
# The ladder: the handshake's arrows slope across the 10 ms link; each probe
# leaves the client and stops at the cut, and so does the reset.
socklab.show(run.ladder())

# %%
# Why the RST: the kernel's account
# ---------------------------------
# The kernel's own events, on both hosts. The client's socket goes from
# ``TCP_ESTABLISHED`` straight to ``TCP_CLOSE``, and the reset it sends on
# the way has the reason ``TCP_KEEPALIVE_TIMEOUT`` ("When we have already
# run out of all the chances, which means keepalive timeout, we have to
# reset the connection", in ``include/net/rstreason.h``): ``tcp_keepalive_timer()`` sends it with
# ``tcp_send_active_reset()`` before ``tcp_write_err()`` reports the error.
# The counters say the same: ``TcpExtTCPKeepAlive`` counts the two probes,
# ``TcpExtTCPAbortOnTimeout`` the connection given up.
socklab.show(run.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
run.expect(
    calls={"client: recv()": "ETIMEDOUT"},
    values={"tcp_keepalive_time": 7200, "tcp_keepalive_intvl": 75, "tcp_keepalive_probes": 9},
    flow=["client [S]", "server [S.]", "client [.]", "client [.]", "client [.]", "client [R.]", "server [F.]"],
    packets={3: {"seq": 0, "length": 0, "fate": "cut"}, 4: {"seq": 0, "length": 0, "fate": "cut"},
             5: {"flags": "R.", "fate": "cut"}},
    states={
        "idle, keepalive on": {"client": {"state": "ESTAB", "timer": "keepalive"}, "server": "ESTAB"},
        "first probe sent": {"client": "ESTAB", "server": "ESTAB"},
        "after recv()": {"client": None, "server": "ESTAB"},
    },
    resets=[("client", "TCP_KEEPALIVE_TIMEOUT")],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1"]},
    counters={"client:TcpExtTCPKeepAlive": COUNT, "client:TcpExtTCPAbortOnTimeout": 1},
)
assert default_total == 7875, f"the page says the defaults add up to 7875 s; they give {default_total} s"
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``socket(7)`` (``SO_KEEPALIVE``: "Enable sending of keep-alive messages on
#    connection-oriented sockets"), ``tcp(7)`` (``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``,
#    ``TCP_KEEPCNT``; ``tcp_keepalive_time``, ``tcp_keepalive_intvl``,
#    ``tcp_keepalive_probes``; "Keep-alives are sent only when the SO_KEEPALIVE socket
#    option is enabled"), ``recv(2)`` (``ETIMEDOUT``); RFC 9293 section 3.8.4 (TCP
#    keep-alives: off by default, and an idle interval that "MUST default to no less
#    than two hours"), RFC 1122 section 4.2.3.6 ("Such a segment generally contains
#    SEG.SEQ = SND.NXT-1"); the kernel's
#    ``net/ipv4/tcp_timer.c`` (``tcp_keepalive_timer()``) and
#    ``include/net/rstreason.h`` (``TCP_KEEPALIVE_TIMEOUT``).
