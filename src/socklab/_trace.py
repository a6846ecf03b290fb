"""Captured frames -> packets with relative numbers -> tcpdump-style lines.

Theory of operation
-------------------
One dissector, used on both sides of the fork: the scenario's child calls
``parse`` on each captured frame to know when the packet it waits for has
left (``Lab.wait_packet``), and the parent calls ``dissect`` on all of them for
traces, ladders and claims. It reads the Ethernet, IPv4/IPv6 and TCP headers
with ``struct`` (``lo`` frames carry an all-zero Ethernet header), so the
child stays light; scapy is kept for what it is strongest at, reading capture
files back (the build checks every pcap it publishes with scapy's reader).

Sequence numbers are made relative per direction, as ``tcpdump`` does by
default, except that the SYN itself shows ``seq 0`` (tcpdump prints it
absolute): with the ISN random per connection, relative numbers are what make
two runs print the same trace. Timestamp option values are left out for the
same reason (they are clocks); the options themselves are listed.

The line format follows tcpdump's ``print-tcp.c``: flags in the order
``F S R P . U E W``; ``seq a:b`` when the segment carries data, ``seq a`` for a
SYN, FIN or RST without data, no ``seq`` for a pure ACK; ``ack`` only with the
ACK flag.
"""

from __future__ import annotations

import dataclasses
import socket
import struct

from ._vocab import Endpoint


@dataclasses.dataclass(frozen=True)
class Packet:
    """One TCP segment as a page shows it."""

    index: int
    time_ns: int  #: kernel timestamp, ns since the epoch
    ip: str  #: "IP" or "IP6"
    source: Endpoint
    destination: Endpoint
    flags: str  #: tcpdump letters: "S", "S.", "F.", "P.", "R", "R."
    seq: int  #: relative to this direction's ISN (absolute when no SYN was seen)
    ack: int | None  #: relative to the other direction's ISN; None without ACK
    win: int
    length: int  #: payload bytes
    options: str  #: "mss 65495,sackOK,TS,nop,wscale 7" ("" when none)
    payload: bytes = b""
    frame: int = 0  #: index of the captured frame it came from
    #: On a two-hosts link: when it left the link (None if it never did), and what became of it
    #: ("delivered", "dropped", "cut", "lost", "injected"; "" on loopback).
    arrived_ns: int | None = None
    fate: str = ""
    rule: str = ""  #: the link rule that dropped, held or slowed it

    @property
    def sport(self) -> int:
        return self.source.port or 0

    @property
    def dport(self) -> int:
        return self.destination.port or 0

    @property
    def mss(self) -> int | None:
        """The MSS option's value (a SYN's), None without one."""
        return self._option("mss")

    @property
    def wscale(self) -> int | None:
        """The window scale option's value (a SYN's), None without one."""
        return self._option("wscale")

    def _option(self, name: str) -> int | None:
        for option in self.options.split(","):
            key, _, value = option.partition(" ")
            if key == name and value.isdigit():
                return int(value)
        return None

    def line(self, t0_ns: int) -> str:
        """The tcpdump-style line, time relative to `t0_ns`."""
        return (f"{(self.time_ns - t0_ns) / 1e9:9.6f} {self.ip} {tcpdump_address(self.source)} > "
                f"{tcpdump_address(self.destination)}: {self.text()}")

    def text(self) -> str:
        """Everything after the addresses: ``Flags [P.], seq 1:2, ack 2, win 512, length 1``."""
        parts = [f"Flags [{self.flags}]"]
        if self.length:
            parts.append(f"seq {self.seq}:{self.seq + self.length}")
        elif any(f in self.flags for f in "SFR"):
            parts.append(f"seq {self.seq}")
        if self.ack is not None:
            parts.append(f"ack {self.ack}")
        parts.append(f"win {self.win}")
        if self.options:
            parts.append(f"options [{self.options}]")
        parts.append(f"length {self.length}")
        return ", ".join(parts)


def tcpdump_address(end: Endpoint) -> str:
    """An endpoint as tcpdump prints it: ``127.0.0.1.4321``, ``::1.4321``."""
    return f"{end.address}.{end.port}"


def flag_text(bits: int) -> str:
    """tcpdump's flag letters (print-tcp.c order): F S R P . U E W; "none" for none."""
    letters = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."),
               (0x20, "U"), (0x40, "E"), (0x80, "W"))
    return "".join(letter for bit, letter in letters if bits & bit) or "none"


_OPTION_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sackOK", 5: "sack", 8: "TS"}


def option_text(raw: bytes) -> str:
    """TCP options as tcpdump names them, timestamp values left out: ``mss 65495,sackOK,TS,nop,wscale 7``."""
    names, i = [], 0
    while i < len(raw):
        kind = raw[i]
        if kind in (0, 1):
            names.append(_OPTION_NAMES[kind])
            i += 1
            if kind == 0:
                break
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            names.append("[bad opt]")
            break
        size = raw[i + 1]
        value = raw[i + 2 : i + size]
        if kind == 2 and len(value) == 2:
            names.append(f"mss {int.from_bytes(value, 'big')}")
        elif kind == 3 and len(value) == 1:
            names.append(f"wscale {value[0]}")
        else:
            names.append(_OPTION_NAMES.get(kind, f"opt-{kind}"))
        i += size
    return ",".join(names)


_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD
_TCP = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, checksum, urgent


def parse(data: bytes, time_ns: int = 0, frame: int = 0) -> Packet | None:
    """The TCP segment in an Ethernet frame, numbers absolute; None for anything else.

    Cheap enough for the scenario's child, which parses every frame it waits on.
    """
    if len(data) < 14:
        return None
    ethertype = int.from_bytes(data[12:14], "big")
    if ethertype == _ETHERTYPE_IPV4 and len(data) >= 34:
        ihl = (data[14] & 0x0F) * 4
        if ihl < 20:
            return None
        proto, start = data[23], 14 + ihl
        end = min(len(data), 14 + int.from_bytes(data[16:18], "big"))
        family, ip, raw_src, raw_dst = socket.AF_INET, "IP", data[26:30], data[30:34]
    elif ethertype == _ETHERTYPE_IPV6 and len(data) >= 54:
        proto, start = data[20], 54  # extension headers are not followed: the lab sends none
        end = min(len(data), 54 + int.from_bytes(data[18:20], "big"))
        family, ip, raw_src, raw_dst = socket.AF_INET6, "IP6", data[22:38], data[38:54]
    else:
        return None
    if proto != socket.IPPROTO_TCP or end < start + _TCP.size:
        return None
    sport, dport, seq, ack, offset, bits, win, _sum, _urg = _TCP.unpack_from(data, start)
    header = (offset >> 4) * 4
    if header < _TCP.size or start + header > end:
        return None
    payload = data[start + header : end]
    return Packet(0, time_ns, ip, Endpoint(family, socket.inet_ntop(family, raw_src), sport),
                  Endpoint(family, socket.inet_ntop(family, raw_dst), dport), flag_text(bits), seq,
                  ack if bits & 0x10 else None, win, len(payload),
                  option_text(data[start + _TCP.size : start + header]), payload, frame)


def dissect(frames: list[tuple[int, bytes]]) -> list[Packet]:
    """The TCP packets among Ethernet frames, in order, with relative sequence numbers."""
    raw = [p for number, (time_ns, data) in enumerate(frames) if (p := parse(data, time_ns, number))]
    isn: dict[tuple[Endpoint, Endpoint], int] = {}
    for p in raw:
        if "S" in p.flags:
            isn.setdefault((p.source, p.destination), p.seq)
    packets = []
    for i, p in enumerate(raw):
        mine = isn.get((p.source, p.destination))
        theirs = isn.get((p.destination, p.source))
        seq = (p.seq - mine) % 2**32 if mine is not None else p.seq
        ack = p.ack
        if ack is not None and theirs is not None:
            ack = (ack - theirs) % 2**32
        packets.append(dataclasses.replace(p, index=i, seq=seq, ack=ack))
    return packets


def pcap_bytes(frames: list[tuple[int, bytes]]) -> bytes:
    """A nanosecond-resolution pcap file (LINKTYPE_ETHERNET) holding `frames`.

    Written by hand (a 24-byte header and 16 bytes per frame, pcap-savefile(5)):
    the build reads every file back with scapy, and the tests with tcpdump and tshark.
    """
    out = [struct.pack("=IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
    for time_ns, data in frames:
        sec, nsec = divmod(time_ns, 1_000_000_000)
        out.append(struct.pack("=IIII", sec, nsec, len(data), len(data)))
        out.append(data)
    return b"".join(out)
