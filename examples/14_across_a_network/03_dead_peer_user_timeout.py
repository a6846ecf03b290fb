"""
A dead peer while sending: TCP_USER_TIMEOUT
===========================================

The server's host goes silent (here the link is cut, as when a cable is
pulled or a host loses power) just as the client sends a request. Nothing
tells the client: its kernel retransmits the request with growing intervals,
and gives up when the socket's ``TCP_USER_TIMEOUT`` (1 s here) has run out
since the first retransmission, failing the blocked ``recv()`` with
``ETIMEDOUT``. With the defaults (no ``TCP_USER_TIMEOUT``,
``tcp_retries2`` = 15) the same connection would have waited over 15
minutes. The server, meanwhile, still thinks the connection is open: it learns
otherwise only when it next sends.
"""

# %%
# The scenario
# ------------
# The client connects and sets ``TCP_USER_TIMEOUT`` to 1000 ms ("the maximum
# amount of time in milliseconds that transmitted data may remain
# unacknowledged", tcp(7)). The link is cut, the client sends a request and
# waits for the response in ``recv()``. Afterwards the link comes back, and the
# server, which knows nothing of all this, sends its response.
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


def dead_peer(lab):
    listener, client, server = connected(lab)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1000)
    lab.snapshot("connected")

    lab.link.cut()  # the server's host goes silent: nothing crosses the link any more
    lab.call(client.send, b"GET / HTTP/1.1\r\n\r\n", label="send request")
    lab.link.wait_packet("P.", sender="client", after=2)  # the first retransmission by the timer
    lab.snapshot("retransmitting")
    client.settimeout(10)  # far beyond the user timeout: the kernel gives up first
    lab.call(client.recv, 1024, label="recv response")
    lab.snapshot("the client gave up")

    lab.link.restore()  # the link is back; the server never noticed it was gone
    lab.call(server.send, b"HTTP/1.1 200 OK\r\n\r\n", label="send response")
    lab.wait_packet("R")  # the client's host answers it
    lab.call(server.recv, 1024, label="recv")


run = socklab.run(dead_peer, wire=socklab.Wire(delay=0.025))

# %%
# Socket states
# -------------
# While retransmitting, the client's socket is ``ESTAB`` with its request in
# ``Send-Q`` and the retransmission timer running (``on``, with the count of
# timer retransmissions so far). After ``ETIMEDOUT`` it is gone; the server's
# socket is still ``ESTAB``, with nothing received: a half-open connection.
socklab.show(run.states())

# %%
# The socket's ``TCP_INFO`` at each snapshot: its retransmission timeout
# (``rto``, from the 50 ms round trip of the handshake: RFC 6298's smoothed RTT
# plus at least 200 ms), and, while retransmitting, how many times the timer
# has fired (``retransmits``) and how far it has backed off (``backoff``).
for label in ("connected", "retransmitting"):
    info = run.tcp_info(label)["client"]
    print(f"{label}: rto {info.rto / 1000:.0f} ms, retransmits {info.retransmits}, backoff {info.backoff}, "
          f"unacked {info.unacked}, total_retrans {info.total_retrans}")

# %%
# Call results
# ------------
# ``send()`` returns at once: the request is in the kernel's hands. ``recv()``
# blocks until the kernel gives up, then fails with ``ETIMEDOUT``. Once the
# link is back, the server's ``send()`` succeeds too (nothing on its side has
# changed); the client's host answers the response with an RST, and the
# server's ``recv()`` fails with ``ECONNRESET``.
socklab.show(run.results())

# %%
# Packet trace
# ------------
# The request ``[P.]`` and its three retransmissions, all lost on the cut
# link. The first comes about one RTO after the request and is a *tail loss
# probe* (RFC 8985: when the last segment in flight goes unacknowledged, send
# it again early; counted in ``TcpExtTCPLossProbes``); the next two are the
# retransmission timer's: one RTO after the probe, then twice that. No packet
# marks the end: the kernel gives up silently. After the link is restored,
# the response and the RST from the client's host, which has no socket for it.
socklab.show(run.trace())

# %%
# The retransmission schedule, read from the trace, and when ``recv()``
# failed, in milliseconds after the request was first sent:
DATA = [p for p in run.packets if p.flags == "P." and p.dport == PORT]
RECV = run.call("recv response")
t0 = DATA[0].time_ns
for n, (before, p) in enumerate(zip(DATA, DATA[1:], strict=False), start=1):
    print(f"retransmission {n} at {(p.time_ns - t0) / 1e6:6.0f} ms, {(p.time_ns - before.time_ns) / 1e6:4.0f} ms "
          f"after the previous transmission")
print(f"ETIMEDOUT at {(RECV.time_ns - t0) / 1e6:6.0f} ms, "
      f"{(RECV.time_ns - DATA[2].time_ns) / 1e6:4.0f} ms after the timer's first retransmission")

# %%
# When does the clock start? ``TCP_USER_TIMEOUT`` counts from the connection's
# ``retrans_stamp``, set at the first retransmission by the timer (``tcp_retransmit_skb``:
# "Save stamp of the first (attempted) retransmit"; the loss probe does not set
# it). The timer is clamped to what is left of the user timeout
# (``tcp_clamp_rto_to_user_timeout``) and, when it fires, ``tcp_write_timeout``
# finds the time used up and ends the connection with ``ETIMEDOUT``
# (``tcp_write_err``). The timer may fire some tens of milliseconds late: the
# kernel's timer wheel keeps a timer half a second away only to a few clock
# ticks (``kernel/time/timer.c``). So here: ETIMEDOUT 1 s after the first
# timer retransmission, plus a little, about 1.5 s after the request.
#
# With the defaults there is no user timeout, and ``tcp_retries2`` = 15 decides:
# the kernel allows the time 15 backed-off retransmissions would take from a
# 200 ms RTO (``tcp_model_timeout``, doubling up to the 120 s maximum), counted
# from the same first retransmission (the
# :ref:`timers page <sphx_glr_auto_examples_16_timers_01_timer_schedules.py>`
# reads the defaults of a fresh host and runs this with ``tcp_retries2``
# shortened instead):
print(f"default (tcp_retries2 = 15): ETIMEDOUT {timers.retries2_timeout(15):.1f} s "
      f"({timers.retries2_timeout(15) / 60:.1f} min) after the first retransmission")

# %%
# The ladder: the request and its retransmissions end in crosses on the cut
# link, and the client's ``recv()`` fails with nothing on the wire. The server's
# response, after the link is back, draws the RST.
socklab.show(run.ladder())

# %%
# The kernel's account
# --------------------
# The kernel's events of both hosts (recorded as root): one
# ``tcp:tcp_retransmit_skb`` per retransmission, the client's socket going from
# ``TCP_ESTABLISHED`` to ``TCP_CLOSE`` without a reset sent or received, and,
# at the end, the client's host answering the response with a reset from no
# socket (``NO_SOCKET``), taken by the server's socket in ``TCP_ESTABLISHED``
# (hence ``ECONNRESET``: ``tcp_reset()`` picks the errno by state).
socklab.show(run.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke. The timing is claimed on the
# run's clock (the link's timestamps and the call's return), with a tolerance.
connected_info, retrans_info = run.tcp_info("connected")["client"], run.tcp_info("retransmitting")["client"]
RTO = connected_info.rto / 1e6
TOLERANCE = 0.06  # the timer wheel keeps a timer this far ahead to some tens of ms, and the machine may be busy
timers.within("the timer's first retransmission, one RTO after the loss probe", DATA[1].time_ns, DATA[2].time_ns,
              RTO, TOLERANCE)
timers.within("the timer's second retransmission, after twice the RTO", DATA[2].time_ns, DATA[3].time_ns,
              2 * RTO, TOLERANCE)
timers.within("ETIMEDOUT, TCP_USER_TIMEOUT after the first timer retransmission", DATA[2].time_ns, RECV.time_ns,
              1.0, 0.3)  # the call's return is stamped in user space: a loaded machine wakes the program late
if not (0.2 <= RTO <= 0.3 and retrans_info.retransmits == 1 and retrans_info.backoff == 1):
    raise socklab.ClaimError(f"the page says the RTO is 200 ms plus the round trip, and one timer retransmission "
                             f"backed off once; TCP_INFO says rto {RTO * 1000:.0f} ms, retransmits "
                             f"{retrans_info.retransmits}, backoff {retrans_info.backoff}")
run.expect(
    calls={"client: recv response": "ETIMEDOUT", "server: send response": 19, "server: recv": "ECONNRESET"},
    flow=["client [S]", "server [S.]", "client [.]"] + ["client [P.]"] * 4 + ["server [P.]", "client [R]"],
    packets={i: {"fate": "cut"} for i in range(3, 7)},
    states={
        "retransmitting": {"client": {"state": "ESTABLISHED", "send_q": 18, "timer": "on"},
                           "server": ("ESTABLISHED", 0)},
        "the client gave up": {"client": None, "server": ("ESTABLISHED", 0)},
    },
    counters={"client:TcpRetransSegs": 3, "client:TcpExtTCPLossProbes": 1, "client:TcpExtTCPTimeouts": 3,
              "client:TcpExtTCPAbortOnTimeout": 1},
    resets=[("no socket", "NO_SOCKET")],
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "CLOSE"],
                 "server": ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE"]},
)
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``tcp(7)`` (``TCP_USER_TIMEOUT``, ``tcp_retries2``: "The default value of 15 yields a
#    hypothetical timeout of 924.6 seconds"), ``recv(2)`` (``ETIMEDOUT``), RFC 5482 (the TCP User
#    Timeout option), RFC 6298 (computing the retransmission timer; its backoff, section 5.5),
#    RFC 8985 (RACK-TLP: the tail loss probe), RFC 9293 section 3.8.3 (the user timeout);
#    ``net/ipv4/tcp_timer.c`` (``tcp_retransmit_timer``, ``tcp_write_timeout``,
#    ``retransmits_timed_out``, ``tcp_model_timeout``, ``tcp_clamp_rto_to_user_timeout``).
