"""The namespace's TCP counters, and TCP_INFO of one socket: what the kernel counted, no privilege needed.

Theory of operation
-------------------
* ``/proc/net/netstat`` and ``/proc/net/snmp`` are per network namespace: read
  from a process inside the run's namespace they count only the run's packets
  and sockets (``net->mib``). Each file is pairs of lines, a header of names and
  a line of values, both starting with the group (``TcpExt:``, ``Tcp:``...).
  Counters are named the way ``nstat`` names them, group and name joined:
  ``TcpExtTCPAbortOnData``, ``TcpOutRsts``. :func:`read_counters` takes a
  reading, :func:`changed` the difference of two: only what moved, so a run's
  table lists the handful of counters its scenario touched (``TcpExtTCPAbortOnData``
  when data arrived for a closed socket, ``TcpExtListenOverflows`` when the
  accept queue was full...). ``TcpCurrEstab`` is a gauge, the others counters.
* ``getsockopt(TCP_INFO)`` copies ``struct tcp_info`` (include/uapi/linux/tcp.h)
  for one socket: its state, the retransmission timer's progress (retransmits,
  probes, backoff, rto), the queue (unacked, lost, retrans, notsent_bytes) and
  the RTT estimate. The kernel copies ``min(len, sizeof(struct tcp_info))``
  bytes, and the struct only grows at its end, so :func:`tcp_info` asks for the
  size this module knows and fills the fields an older kernel did not send with
  ``None``.
"""

from __future__ import annotations

import dataclasses
import socket
import struct

from ._vocab import State

SOURCES = ("/proc/net/netstat", "/proc/net/snmp")
TCP_GROUPS = ("Tcp", "TcpExt")


def parse_counters(text: str) -> dict[str, int]:
    """nstat-style names -> values from the text of /proc/net/netstat or /proc/net/snmp."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = header.partition(":")
        vgroup, _, numbers = values.partition(":")
        if group != vgroup:
            raise ValueError(f"unexpected counter lines: {header[:40]!r} then {values[:40]!r}")
        for name, value in zip(names.split(), numbers.split(), strict=True):
            out[group + name] = int(value)
    return out


def read_counters() -> dict[str, int]:
    """A reading of every counter of the calling process's network namespace."""
    out: dict[str, int] = {}
    for path in SOURCES:
        with open(path) as f:
            out.update(parse_counters(f.read()))
    return out


def changed(before: dict[str, int], after: dict[str, int], groups: tuple[str, ...] = TCP_GROUPS) -> dict[str, int]:
    """{name: after - before} of the counters of `groups` (all when empty) that changed, in the kernel's order."""
    def wanted(name: str) -> bool:
        return not groups or any(name.startswith(g) and name[len(g):len(g) + 1].isupper() for g in groups)

    return {name: value - before.get(name, 0) for name, value in after.items()
            if value != before.get(name, 0) and wanted(name)}


# struct tcp_info, in the kernel's order: (name, struct code). Underscore names are not exposed.
_TCP_INFO = (
    ("state", "B"), ("ca_state", "B"), ("retransmits", "B"), ("probes", "B"), ("backoff", "B"), ("options", "B"),
    ("_wscale", "B"), ("_flags8", "B"),
    ("rto", "I"), ("ato", "I"), ("snd_mss", "I"), ("rcv_mss", "I"),
    ("unacked", "I"), ("sacked", "I"), ("lost", "I"), ("retrans", "I"), ("fackets", "I"),
    ("last_data_sent", "I"), ("last_ack_sent", "I"), ("last_data_recv", "I"), ("last_ack_recv", "I"),
    ("pmtu", "I"), ("rcv_ssthresh", "I"), ("rtt", "I"), ("rttvar", "I"), ("snd_ssthresh", "I"), ("snd_cwnd", "I"),
    ("advmss", "I"), ("reordering", "I"), ("rcv_rtt", "I"), ("rcv_space", "I"), ("total_retrans", "I"),
    ("pacing_rate", "Q"), ("max_pacing_rate", "Q"), ("bytes_acked", "Q"), ("bytes_received", "Q"),
    ("segs_out", "I"), ("segs_in", "I"), ("notsent_bytes", "I"), ("min_rtt", "I"),
    ("data_segs_in", "I"), ("data_segs_out", "I"), ("delivery_rate", "Q"),
    ("busy_time", "Q"), ("rwnd_limited", "Q"), ("sndbuf_limited", "Q"), ("delivered", "I"), ("delivered_ce", "I"),
    ("bytes_sent", "Q"), ("bytes_retrans", "Q"), ("dsack_dups", "I"), ("reord_seen", "I"), ("rcv_ooopack", "I"),
    ("snd_wnd", "I"), ("rcv_wnd", "I"), ("rehash", "I"), ("total_rto", "H"), ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"), ("received_ce", "I"), ("delivered_e1_bytes", "I"), ("delivered_e0_bytes", "I"),
    ("delivered_ce_bytes", "I"), ("received_e1_bytes", "I"), ("received_e0_bytes", "I"), ("received_ce_bytes", "I"),
    ("accecn_fail_mode", "H"), ("accecn_opt_seen", "H"),
)
# Native alignment ("@") lays the fields out as the C compiler does.
_OFFSETS = {name: (struct.calcsize("@" + "".join(c for _, c in _TCP_INFO[:i])), code)
            for i, (name, code) in enumerate(_TCP_INFO)}
TCP_INFO_SIZE = struct.calcsize("@" + "".join(c for _, c in _TCP_INFO))


@dataclasses.dataclass(frozen=True)
class TcpInfo:
    """``struct tcp_info`` of one socket (include/uapi/linux/tcp.h); None where the kernel's struct is shorter.

    Times are in microseconds (rto, ato, rtt, rttvar, min_rtt) or milliseconds (last_*), as the kernel gives them.
    """

    state: State | int  #: the socket's state (its number if this version does not know it)
    ca_state: int
    retransmits: int  #: retransmissions of the current RTO episode (icsk_retransmits)
    probes: int  #: unanswered zero-window or keepalive probes
    backoff: int  #: exponential backoff of the retransmission timer
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int  #: segments sent and not acknowledged (packets_out)
    sacked: int
    lost: int
    retrans: int  #: segments retransmitted and not yet acknowledged
    fackets: int
    last_data_sent: int
    last_ack_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int
    pacing_rate: int | None = None
    max_pacing_rate: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    segs_out: int | None = None
    segs_in: int | None = None
    notsent_bytes: int | None = None  #: bytes written and not yet sent
    min_rtt: int | None = None
    data_segs_in: int | None = None
    data_segs_out: int | None = None
    delivery_rate: int | None = None
    busy_time: int | None = None
    rwnd_limited: int | None = None
    sndbuf_limited: int | None = None
    delivered: int | None = None
    delivered_ce: int | None = None
    bytes_sent: int | None = None
    bytes_retrans: int | None = None
    dsack_dups: int | None = None
    reord_seen: int | None = None
    rcv_ooopack: int | None = None
    snd_wnd: int | None = None
    rcv_wnd: int | None = None
    rehash: int | None = None
    total_rto: int | None = None
    total_rto_recoveries: int | None = None
    total_rto_time: int | None = None
    received_ce: int | None = None  #: AccECN counters (Linux 6.18)
    delivered_e1_bytes: int | None = None
    delivered_e0_bytes: int | None = None
    delivered_ce_bytes: int | None = None
    received_e1_bytes: int | None = None
    received_e0_bytes: int | None = None
    received_ce_bytes: int | None = None
    accecn_fail_mode: int | None = None
    accecn_opt_seen: int | None = None


def parse_tcp_info(raw: bytes) -> TcpInfo:
    """Decode the bytes getsockopt(TCP_INFO) returned, however many the kernel sent (at least up to total_retrans)."""
    values: dict[str, object] = {}
    for name, (offset, code) in _OFFSETS.items():
        size = struct.calcsize(code)
        if offset + size > len(raw):
            break
        values[name] = struct.unpack_from("@" + code, raw, offset)[0]
    if "total_retrans" not in values:
        raise ValueError(f"TCP_INFO of {len(raw)} bytes is shorter than any Linux kernel's struct tcp_info")
    wscale = values.pop("_wscale")
    values.pop("_flags8")
    assert isinstance(wscale, int)
    values["snd_wscale"], values["rcv_wscale"] = wscale & 0xF, wscale >> 4
    number = values["state"]
    assert isinstance(number, int)
    values["state"] = State(number) if number in State._value2member_map_ else number
    return TcpInfo(**values)  # type: ignore[arg-type]


def tcp_info(sock: socket.socket) -> TcpInfo:
    """getsockopt(sock, IPPROTO_TCP, TCP_INFO), parsed."""
    return parse_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE))
