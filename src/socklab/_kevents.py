"""Kernel events as plain records, and the decoding of the recorder's ring-buffer records into them.

Theory of operation
-------------------
Every event is a frozen dataclass of ints and strings, so it pickles across the
fork of a run and compares in tests. Field offsets come from the tracepoint's
tracefs ``format`` (so a kernel that moves or lacks a field is read correctly or
yields "" for it), and enum values become names through the kernel's BTF enums
(``sk_rst_reason``, ``skb_drop_reason``, the TCP states), with their C prefixes
removed: ``SK_RST_REASON_TCP_ABORT_ON_DATA`` is ``TCP_ABORT_ON_DATA``, the
spelling of the tracepoint's own print format. Nothing is a table typed in here.

A record, as the programs of ``_kernel`` write it: u64 CLOCK_MONOTONIC ns, u32
kind (1-based index into ``TRACEPOINTS``), u32 generation, u8 the socket's state
read from ``sk_state`` (0 when unknown), u8 the watch slot whose namespace
matched (0 the run's own, 1-3 its hosts), 2 bytes pad, u32 device ifindex (0
when unknown), the tracepoint's own record from its byte 8 on (bytes 0-7 are not
readable by a program), and for ``kfree_skb`` the first ``HEADER_BYTES`` of the
packet from its network header, which is where the dropped packet's addresses,
ports and flags come from (the tracepoint has none).
"""

from __future__ import annotations

import dataclasses
import socket
import struct

from . import _bpf
from ._vocab import State

HEADER_BYTES = 64  # of a dropped packet, from its network header: IPv6 (40) + TCP ports, flags (14)
REC_HEAD = struct.Struct("<QIIBB2xI")
PAYLOAD = REC_HEAD.size  # 24


# -- events ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KernelEvent:
    """Something the kernel did to a TCP socket or packet of a watched namespace (see `host`)."""

    time_ns: int  #: CLOCK_REALTIME nanoseconds (the capture's clock)
    family: int  #: socket.AF_INET or socket.AF_INET6 (0 when unknown)
    saddr: str
    sport: int
    daddr: str
    dport: int
    sk: int  #: the kernel address of the socket (0 when none): the same number for one socket's events
    #: the host whose namespace it happened in ("" for the run's own namespace); keyword-only, last
    host: str = dataclasses.field(default="", kw_only=True)


@dataclasses.dataclass(frozen=True)
class StateChange(KernelEvent):
    """``sock:inet_sock_set_state``: a TCP socket moved from `old` to `new` (kernel names, e.g. FIN_WAIT1).

    Seen on Linux 6.18: a connection's server socket starts at LISTEN (it is
    cloned from the listener, LISTEN -> SYN_RECV); a connecting socket's first
    change has port 0 (the port is chosen after it); ``close()`` of a FIN_WAIT2
    socket records FIN_WAIT2 -> FIN_WAIT2 (``tcp_close_state()``) before the
    socket becomes a timewait mini-socket (FIN_WAIT2 -> CLOSE); TIME_WAIT is
    never a `new` state here.
    """

    old: State | None
    new: State | None


@dataclasses.dataclass(frozen=True)
class ResetSent(KernelEvent):
    """``tcp:tcp_send_reset``: the kernel sent an RST; `state` of the sending socket ("" when there is none).

    For a reset the socket sends on its own (``tcp_send_active_reset()``: close
    with unread data, SO_LINGER {1, 0}) the tracepoint fires after the RST was
    transmitted, and on lo the peer has processed it by then: the peer's
    :class:`ResetReceived` comes first in the record.
    """

    state: State | None
    reason: str  #: enum sk_rst_reason without its prefix (TCP_ABORT_ON_DATA, NO_SOCKET...); "" when unknown


@dataclasses.dataclass(frozen=True)
class ResetReceived(KernelEvent):
    """``tcp:tcp_receive_reset``: ``tcp_reset()`` ran on a socket in `state`.

    Usually an RST arrived. But the kernel also calls ``tcp_reset()`` when it
    aborts a connection itself (data arriving for a FIN_WAIT1/FIN_WAIT2 socket
    whose receive side is shut down): then this event is on the side that
    *sends* the RST, just before its :class:`ResetSent`.
    """

    state: State | None


@dataclasses.dataclass(frozen=True)
class Retransmit(KernelEvent):
    """``tcp:tcp_retransmit_skb``: a segment was sent again by a socket in `state`."""

    state: State | None
    err: int  #: 0, or the negative errno of the retransmission attempt


@dataclasses.dataclass(frozen=True)
class Dropped(KernelEvent):
    """``skb:kfree_skb``: a TCP packet was dropped for `reason` (enum skb_drop_reason without its prefix)."""

    reason: str
    flags: str  #: the segment's TCP flags, tcpdump style ("S", "P.", "R"...)
    ifindex: int  #: the device the packet was on (0 when none)


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """Kernel events cannot be recorded here: why, and what to do."""

    reason: str
    fix: str

    def describe(self) -> str:
        return f"kernel events unavailable: {self.reason}. Fix: {self.fix}"


# -- decoding ----------------------------------------------------------------------------------------------


def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4])


def _sockaddr(raw: bytes) -> tuple[int, str, int]:
    """(family, address, port) of a struct sockaddr_in or sockaddr_in6 as tcp_send_reset records them."""
    family, port = struct.unpack_from("<H", raw)[0], struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_INET6:
        return family, _address(family, raw[8:24]), port
    return family, _address(socket.AF_INET, raw[4:8]), port


def _tcp_flags(bits: int) -> str:
    """tcpdump's spelling of a TCP flags byte: S, S., P., F., R, R.; "." is ACK."""
    text = "".join(c for bit, c in ((0x02, "S"), (0x01, "F"), (0x08, "P"), (0x04, "R"), (0x20, "U")) if bits & bit)
    return text + "." if bits & 0x10 else text or "none"


def _packet(header: bytes) -> tuple[int, str, int, str, int, str] | None:
    """(family, saddr, sport, daddr, dport, flags) of a TCP packet from its network header, else None."""
    version = header[0] >> 4
    if version == 4:
        ihl, proto = (header[0] & 0xF) * 4, header[9]
        family, src, dst = socket.AF_INET, header[12:16], header[16:20]
    elif version == 6:
        ihl, proto = 40, header[6]
        family, src, dst = socket.AF_INET6, header[8:24], header[24:40]
    else:
        return None
    if proto != socket.IPPROTO_TCP or ihl + 14 > len(header):
        return None
    sport, dport = struct.unpack_from("!HH", header, ihl)
    return family, _address(family, src), sport, _address(family, dst), dport, _tcp_flags(header[ihl + 13])


@dataclasses.dataclass
class Decoder:
    """Turns one tracepoint's records into events, with field offsets and enum names from this kernel."""

    tp: _bpf.Tracepoint
    states: dict[int, str]
    reasons: dict[int, str]

    def __post_init__(self) -> None:
        self._slices = {f.name: (PAYLOAD + f.offset - 8, PAYLOAD + f.offset - 8 + f.size, f.array, f.signed)
                        for f in self.tp.fields.values() if f.offset >= 8}

    def field(self, raw: bytes, name: str):
        where = self._slices.get(name)
        if where is None:
            return None
        start, end, array, signed = where
        return raw[start:end] if array else int.from_bytes(raw[start:end], "little", signed=signed)

    def state(self, value: int | None) -> State | None:
        """The state numbered `value` (the kernel's numbering, as ``State``), None for none or unknown."""
        return State(value) if value in State._value2member_map_ else None

    def addresses(self, raw: bytes) -> tuple[int, str, int, str, int]:
        family = self.field(raw, "family")
        saddr, daddr = self.field(raw, "saddr"), self.field(raw, "daddr")
        if family is None and saddr is not None and len(saddr) >= 16:  # struct sockaddr (6.10 on)
            family, src, sport = _sockaddr(saddr)
            _f, dst, dport = _sockaddr(daddr)
            return family, src, sport, dst, dport
        if family == socket.AF_INET6:
            saddr, daddr = self.field(raw, "saddr_v6"), self.field(raw, "daddr_v6")
        return (family or 0, _address(family or socket.AF_INET, saddr), self.field(raw, "sport") or 0,
                _address(family or socket.AF_INET, daddr), self.field(raw, "dport") or 0)

    def decode(self, time_ns: int, sk_state: int, ifindex: int, raw: bytes, host: str = "") -> KernelEvent | None:
        """The event of one record (None for a dropped packet that is not TCP), on `host` ("" for the run's own)."""
        name, sk = self.tp.name, self.field(raw, "skaddr") or 0
        if name == "kfree_skb":
            packet = _packet(raw[PAYLOAD + 8 * ((self.tp.size - 8 + 7) // 8):])
            if packet is None:
                return None
            family, saddr, sport, daddr, dport, flags = packet
            return Dropped(time_ns, int(family), saddr, sport, daddr, dport, self.field(raw, "rx_sk") or 0,
                           self.reasons.get(self.field(raw, "reason"), ""), flags, ifindex, host=host)
        where = self.addresses(raw)
        if name == "inet_sock_set_state":
            return StateChange(time_ns, *where, sk, self.state(self.field(raw, "oldstate")),
                               self.state(self.field(raw, "newstate")), host=host)
        if name == "tcp_send_reset":
            state = self.field(raw, "state") if "state" in self.tp.fields else sk_state
            reason = self.field(raw, "reason")
            return ResetSent(time_ns, *where, sk, self.state(state), "" if reason is None else
                             self.reasons.get(reason, str(reason)), host=host)
        if name == "tcp_receive_reset":
            return ResetReceived(time_ns, *where, sk, self.state(sk_state), host=host)
        return Retransmit(time_ns, *where, sk, self.state(self.field(raw, "state")), self.field(raw, "err") or 0,
                          host=host)


def strip_prefix(values: dict[int, str], prefix: str) -> dict[int, str]:
    return {v: n.removeprefix(prefix) for v, n in values.items()}
