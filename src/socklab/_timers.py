"""TCP's timers: what the defaults would take, and timing claims with a tolerance.

Theory of operation
-------------------
A scenario that waits for a kernel timer shortens it (``TCP_USER_TIMEOUT``,
``tcp_retries2``, ``tcp_fin_timeout``, keepalive) so a page builds in seconds,
then claims the time it measured with a tolerance, on the capture's clock
(every stamp here is ``time.time_ns()`` or a packet socket's ``SO_TIMESTAMPNS``:
the same realtime clock). The page also states what the default would have
taken, computed here the way the kernel computes it, not copied from a book.

When a connection gives up retransmitting is decided by ``retransmits_timed_out``
(``net/ipv4/tcp_timer.c``): with no ``TCP_USER_TIMEOUT``, the time it allows is
``tcp_model_timeout(sk, boundary, rto_base)``, the time the retransmission
timer would take to back off `boundary` times from ``rto_base``, doubling each
time up to ``TCP_RTO_MAX``::

    linear_backoff_thresh = ilog2(TCP_RTO_MAX / rto_base)
    if boundary <= linear_backoff_thresh:
        timeout = ((2 << boundary) - 1) * rto_base
    else:
        timeout = ((2 << linear_backoff_thresh) - 1) * rto_base +
                  (boundary - linear_backoff_thresh) * TCP_RTO_MAX

For data, ``boundary`` is ``tcp_retries2`` (15) and ``rto_base`` is
``TCP_RTO_MIN`` (200 ms): 924.6 s. For a SYN, ``tcp_syn_retries`` (6) and
``TCP_TIMEOUT_INIT`` (1 s): 127 s. The actual first RTO of a connection is
its smoothed RTT plus a variance term of at least ``TCP_RTO_MIN``
(``tcp_set_rto``, RFC 6298), so on a 50 ms path it starts near 250 ms.
"""

from __future__ import annotations

import dataclasses

TCP_RTO_MIN = 0.2  #: seconds (include/net/tcp.h: HZ / 5)
TCP_RTO_MAX = 120.0  #: seconds (include/net/tcp.h: 120 * HZ)
TCP_TIMEOUT_INIT = 1.0  #: seconds, the SYN's first RTO (RFC 6298 section 2.1)


def model_timeout(boundary: int, rto_base: float = TCP_RTO_MIN, rto_max: float = TCP_RTO_MAX) -> float:
    """Seconds the kernel allows for `boundary` backed-off retransmissions (``tcp_model_timeout``)."""
    threshold = (round(rto_max * 1000) // round(rto_base * 1000)).bit_length() - 1  # ilog2, in ms
    if boundary <= threshold:
        return ((2 << boundary) - 1) * rto_base
    return ((2 << threshold) - 1) * rto_base + (boundary - threshold) * rto_max


def retries2_timeout(tcp_retries2: int = 15) -> float:
    """When an established connection gives up on unacknowledged data: 924.6 s by default."""
    return model_timeout(tcp_retries2, TCP_RTO_MIN)


def syn_timeout(tcp_syn_retries: int = 6) -> float:
    """When ``connect()`` gives up on an unanswered SYN: 127 s by default."""
    return model_timeout(tcp_syn_retries, TCP_TIMEOUT_INIT)


def syn_schedule(tcp_syn_retries: int = 6, linear_timeouts: int = 4) -> tuple[list[float], float]:
    """When ``connect()`` retransmits an unanswered SYN, and when it gives up (seconds from the first SYN).

    Since Linux 6.5 (``tcp_syn_linear_timeouts``, 4 by default) the retransmission timer keeps
    its initial 1 s for the first `linear_timeouts` expiries and doubles only after them
    (``tcp_retransmit_timer``: ``total_rto > tcp_syn_linear_timeouts``). At each expiry
    ``tcp_write_timeout`` gives up when either the SYN has been retransmitted
    ``tcp_syn_retries + tcp_syn_linear_timeouts`` times, or the time since the first SYN
    (``retrans_stamp``, set by ``tcp_connect``) reaches ``syn_timeout(tcp_syn_retries)``.
    The defaults give 10 retransmissions and 131 s; before 6.5 (``linear_timeouts=0``) 6 and 127 s.
    Returns (the retransmissions' times, the time it gives up).
    """
    allowed = syn_timeout(tcp_syn_retries)
    rto, now = TCP_TIMEOUT_INIT, 0.0
    sent: list[float] = []
    for expiry in range(1, 64):
        now += rto
        if len(sent) >= tcp_syn_retries + linear_timeouts or now >= allowed - 1e-9:
            return sent, now
        sent.append(now)
        if expiry > linear_timeouts:
            rto = min(rto * 2, TCP_RTO_MAX)
    raise ValueError(f"no end to the SYN schedule for tcp_syn_retries={tcp_syn_retries}")


def keepalive_timeout(idle: float = 7200, interval: float = 75, probes: int = 9) -> float:
    """When an idle connection with ``SO_KEEPALIVE`` and a silent peer is given up: the first probe
    after `idle` seconds (``tcp_keepalive_time``), then `probes` unanswered probes `interval` apart
    (``tcp_keepalive_intvl``, ``tcp_keepalive_probes``): 7875 s by default."""
    return idle + interval * probes


#: An orphaned FIN-WAIT-2 socket lasts ``tcp_fin_timeout`` (60 s by default).
FIN_TIMEOUT = 60.0
#: TIME-WAIT lasts ``TCP_TIMEWAIT_LEN``, a constant (``include/net/tcp.h``: 60 * HZ); no sysctl changes it.
TIMEWAIT_LEN = 60.0


def backoff(first_rto: float, n: int, rto_max: float = TCP_RTO_MAX) -> list[float]:
    """The first `n` retransmission intervals starting from `first_rto`, doubling, capped."""
    return [min(first_rto * 2**i, rto_max) for i in range(n)]


class TimingError(AssertionError):
    """A measured time fell outside what the page claims."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """A claimed duration: `expected` seconds, plus or minus `tolerance`."""

    what: str
    expected: float
    tolerance: float

    def check(self, start_ns: int, end_ns: int) -> float:
        """The seconds from `start_ns` to `end_ns` (same clock); TimingError when outside the claim."""
        seconds = (end_ns - start_ns) / 1e9
        if abs(seconds - self.expected) > self.tolerance:
            raise TimingError(f"{self.what}: took {seconds:.3f} s, claimed {self}")
        return seconds

    def __str__(self) -> str:
        return f"{self.expected:g} +/- {self.tolerance:g} s"


def within(what: str, start_ns: int, end_ns: int, expected: float, tolerance: float) -> float:
    """``within("ETIMEDOUT after the last ACK", t0, t1, 1.0, 0.3)``: the seconds measured, or TimingError."""
    return Timing(what, expected, tolerance).check(start_ns, end_ns)
