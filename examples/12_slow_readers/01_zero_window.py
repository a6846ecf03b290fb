"""
The peer stops reading
======================

A receiver that stops calling ``recv()`` fills its buffer, and its kernel
advertises a window of 0. The sender's kernel keeps queuing until its own
buffer is full: then a non-blocking ``send()`` accepts only part of the data,
and the next fails with ``EAGAIN``; a blocking ``send()`` waits (here at
most 0.5 s, with ``SO_SNDTIMEO``). Meanwhile the sender probes the shut
window with backed-off probes, and as long as the receiver's kernel answers
them, no timer ever gives up on the connection. One ``recv()`` opens the
window, and the queued data flows again.
"""

# %%
# The scenario
# ------------
# Small buffers so that this takes kilobytes, not megabytes: a 4 KiB
# ``SO_RCVBUF`` on the listener (the accepted socket inherits it) and a
# 4 KiB ``SO_SNDBUF`` on the client. The client sends 64 KiB at a time
# without blocking until the kernel refuses; waits for the server's
# ``[.] win 0``; tries one blocking send with a 0.5 s ``SO_SNDTIMEO``; then
# waits for three window probes. Only then does the server read, and it
# reads everything.
import socket
import struct

import socklab

PORT = 4321
CHUNK = b"x" * 65536


def connected_pair():
    """A listener with a 4 KiB receive buffer on 127.0.0.1:4321, a client, the server socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(1)
    client = socket.create_connection(("127.0.0.1", PORT))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    server, _ = listener.accept()
    return listener, client, server


def fill(lab, client, label):
    """Send 64 KiB at a time without blocking, until EAGAIN; return how much the kernel took."""
    taken = 0
    for i in range(1, 20):  # 20 is far more than it needs
        n = lab.call(client.send, CHUNK, label=f"{label} #{i}")
        if n is None:  # EAGAIN (BlockingIOError), recorded by lab.call
            return taken
        taken += n
    raise RuntimeError("the kernel took more than 19 x 64 KiB: the buffers are not what this page sets")


def peer_stops_reading(lab):
    listener, client, server = connected_pair()

    client.setblocking(False)
    sent = fill(lab, client, "send 64 KiB")
    lab.wait_packet(".", sport=PORT, win=0)  # the server's kernel: window shut
    sent += fill(lab, client, "after win 0, send 64 KiB")  # what that last ACK freed
    lab.record("bytes the kernel took", sent)
    lab.snapshot("window shut")

    client.setblocking(True)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 500_000))
    lab.call(client.send, CHUNK, label="blocking send, SO_SNDTIMEO 0.5 s")

    # the third window probe, answered: the server's third [.] win 0 (the second probe's answer
    # is rate limited, as the probes section below shows and checks)
    lab.wait_packet(".", sport=PORT, win=0, after=2, timeout=4)
    lab.snapshot("three probes later")

    got = len(lab.call(server.recv, 65536, label="recv"))
    while got < sent:  # the rest, as the client's kernel sends it
        got += len(server.recv(65536))
    lab.record("bytes the server read", got)
    lab.call(client.close, label="close()")
    lab.call(server.recv, 65536, label="recv, at the end")
    lab.call(server.close, label="close()")
    lab.wait_state(client, "TIME_WAIT")


run = socklab.run(peer_stops_reading)

# %%
# Socket states
# -------------
# With the window shut, the server's ``Recv-Q`` holds its 4096 bytes and the
# client's ``Send-Q`` the rest of what its kernel took. The client's
# ``Timer`` column shows ``persist``: the zero-window probe timer, whose
# last number counts the probes sent (they start again from 0 whenever the
# receiver answers one).
socklab.show(run.states())

# %%
# Call results
# ------------
# The non-blocking ``send()`` calls return less than the 64 KiB asked (what
# fitted in the buffer), then fail with ``EAGAIN``: Python raises
# ``BlockingIOError``. The ``[.] win 0`` still acknowledged the last
# segment, which freed some buffer: the next non-blocking ``send()`` takes
# that much, and the one after it fails again. Now nothing can free the
# buffer: the blocking ``send()`` with ``SO_SNDTIMEO`` waits 0.5 s and
# fails with ``EAGAIN`` (had any data fitted during the wait, it would have
# returned that short count instead; without the option it would have
# waited for ever). The server's first ``recv()`` returns its full 4 KiB
# buffer, and it reads every byte in the end.
socklab.show(run.results())
blocked = run.call("client: blocking send, SO_SNDTIMEO 0.5 s")
print(f"the blocking send() waited {(blocked.time_ns - blocked.start_ns) / 1e9:.3f} s")

# %%
# Packet trace
# ------------
# The data until the server's ``[.]`` with ``win 0``. Then the probes: the
# client's ``[.]`` with no data and the sequence number just below the
# window (``ack 1`` with no ``seq`` shown: it carries nothing new), which
# the server's kernel answers with its window, still 0. One probe goes
# unanswered: the server's kernel sends at most one answer to such
# out-of-window segments per ``net.ipv4.tcp_invalid_ratelimit`` (500 ms),
# and counts the others in ``TcpExtTCPACKSkippedSeq``. After the
# ``recv()``, the server's ``[.]`` with a window of 4096 lets the data go.
socklab.show(run.trace())

# %%
# The ladder: the data, the shut window, the probes and their answers, then
# the read and the data that follows it.
socklab.show(run.ladder())

# %%
# The probes, measured
# --------------------
# Each probe's time after the window shut, the interval since the previous
# one, and whether the server answered. The intervals double from the
# retransmission timeout (RTO, 200 ms at least on Linux): the timer backs
# off as for a retransmission. ``TCP_INFO`` at the snapshots says the same:
# ``backoff`` is the number of doublings, ``probes`` the unanswered probes.
rows = []  # (time, answered) of each probe
shut = next((p for p in run.packets if p.win == 0), None)  # None without capture
if shut is not None:
    client_port = shut.dport
    probes = [i for i, p in enumerate(run.packets)
              if p.time_ns > shut.time_ns and p.sport == client_port and p.flags == "." and p.length == 0
              and p.time_ns < run.call("server: recv").start_ns]
    previous = shut.time_ns
    for i in probes:
        probe, answer = run.packets[i], run.packets[i + 1] if i + 1 < len(run.packets) else None
        answered = (answer is not None and answer.sport == PORT and answer.win == 0
                    and answer.time_ns - probe.time_ns < 5e6)
        rows.append((probe.time_ns, answered))
        print(f"probe at +{(probe.time_ns - shut.time_ns) / 1e9:.3f} s, "
              f"{(probe.time_ns - previous) / 1e9:.3f} s after the previous packet of the client's, "
              f"{'answered' if answered else 'not answered'}")
        previous = probe.time_ns
else:
    print("no packet capture here: the probes cannot be listed (the TCP_INFO below still counts them)")
for label in ("window shut", "three probes later"):
    info = run.tcp_info(label)["client"]
    print(f"TCP_INFO at {label!r}: probes {info.probes}, backoff {info.backoff}, rto {info.rto / 1e3:.0f} ms")

# %%
# With the default timers
# -----------------------
# Nothing here was shortened: these are the kernel's own probe timers. The
# schedule they follow, computed from this run's RTO: each interval twice
# the last, up to ``TCP_RTO_MAX`` (120 s), then a probe every 120 s. What
# would end the connection is a count of unanswered probes reaching
# ``tcp_retries2`` (15); the table above shows the count back at 0 after an
# answered probe, so against a receiver that is alive and answers, the
# sender goes on probing. ``TCP_USER_TIMEOUT``, or the application's own
# timeout, is what ends such a connection.
rto = run.tcp_info("window shut")["client"].rto / 1e6
schedule, at = [], 0.0
for k in range(12):
    at += min(rto * 2**k, 120.0)
    schedule.append(at)
print("probes at (s after the window shut): " + ", ".join(f"{t:.1f}" for t in schedule) + ", then every 120 s")

# %%
# The kernel's events: no state change while the window is shut (the
# connection stays ``TCP_ESTABLISHED``); the drops of the probes at the
# receiver, ``TCP_OLD_SEQUENCE`` (a probe is built to be dropped and draw an
# ACK); and the counters: ``TcpExtTCPToZeroWindowAdv`` (the server
# advertised 0), ``TcpExtTCPWinProbe`` (the probes sent),
# ``TcpExtTCPFromZeroWindowAdv`` (the window reopened).
socklab.show(run.events())

# %%
# What this page claims
# ---------------------
# Checked against this build's run: if the kernel does anything else, the
# build fails here and says which claim broke.
sent = run.value("bytes the kernel took")
sends = [c for c in run.calls if c.label.startswith("send 64 KiB")]
assert sends[-1].errno == "EAGAIN" and all(0 < c.value < len(CHUNK) for c in sends[:-1]), (
    f"the page says the non-blocking sends took part of 64 KiB each, then failed with EAGAIN: "
    f"{[c.outcome for c in sends]}")
assert run.calls[len(sends)].label.startswith("after win 0") and all(
    c.errno or 0 < c.value < len(CHUNK) for c in run.calls if c.label.startswith("after win 0")), (
    "the page says what the last ACK freed was taken in pieces too, before EAGAIN")
run.expect(
    calls={"client: blocking send, SO_SNDTIMEO 0.5 s": "EAGAIN", "server: recv, at the end": b""},
    values={"bytes the server read": sent},
    states={
        "window shut": {"server": ("ESTAB", 4096),
                        "client": {"state": "ESTAB", "send_q": sent - 4096, "timer": "persist"}},
        "three probes later": {"server": ("ESTAB", 4096),
                               "client": {"state": "ESTAB", "send_q": sent - 4096, "timer": "persist"}},
    },
    transitions={"client": ["CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]},
    resets=[],
)
assert 0.5 <= (blocked.time_ns - blocked.start_ns) / 1e9 <= 0.8, "the page says the blocking send waited 0.5 s"
assert len(run.call("server: recv").value) == 4096, "the page says the first recv() returns the full 4 KiB buffer"
if shut is not None:
    assert len(rows) >= 3, f"the page says three probes came before the server read: {len(probes)}"
    # An answer is rate limited: at most one per tcp_invalid_ratelimit (500 ms).
    last_answer = None
    for at, answered in rows:
        if last_answer is not None and at - last_answer < 0.45e9:
            assert not answered, "the page says an answer within 500 ms of the last is not sent"
        if last_answer is None or at - last_answer > 0.55e9:
            assert answered, "the page says a probe 500 ms after the last answer is answered"
        if answered:
            last_answer = at
    assert not all(answered for _, answered in rows), "the page says one probe went unanswered"
    intervals = [b - a for a, b in zip([shut.time_ns] + [t for t, _ in rows], [t for t, _ in rows], strict=False)]
    assert all(1.6 < b / a < 2.4 for a, b in zip(intervals, intervals[1:], strict=False)), (
        f"the page says the intervals double: {[f'{i / 1e9:.3f}' for i in intervals]}")
else:
    run.unchecked.append("the probes' times and answers (no packet capture)")
later = run.tcp_info("three probes later")["client"]
if run.isolation.capture:  # (without capture the run could not wait for the third probe)
    assert (later.probes, later.backoff) == (0, 3), (
        f"the page says three probes backed off three times and the answered third left the count at 0: "
        f"probes {later.probes}, backoff {later.backoff}")
else:
    run.unchecked.append("TCP_INFO after three probes (no packet capture to wait for them)")
if run.counters is not None:
    for counter in ("TcpExtTCPToZeroWindowAdv", "TcpExtTCPWinProbe", "TcpExtTCPFromZeroWindowAdv"):
        assert run.counters.get(counter, 0) >= 1, f"the page says {counter} moved: {run.counters}"
socklab.show(run.about())

# %%
# .. admonition:: References
#
#    ``send(2)`` (``EAGAIN``: "The socket is marked nonblocking and the
#    requested operation would block", or "a timeout had been set for
#    sending (SO_SNDTIMEO) and the timeout expired before data was
#    transmitted"); ``socket(7)`` (``SO_SNDTIMEO``, ``SO_RCVBUF``,
#    ``SO_SNDBUF``: "the kernel doubles this value"); ``tcp(7)``
#    (``TCP_USER_TIMEOUT``, ``tcp_invalid_ratelimit``); RFC 9293 section
#    3.8.6.1 (zero-window probing: "The transmitting host SHOULD send the
#    first zero-window probe when a zero window has existed for the
#    retransmission timeout period ... and SHOULD increase exponentially the
#    interval between successive probes"; a receiver that keeps answering
#    keeps the connection open).
