"""Captured frames -> packets with relative numbers -> tcpdump-style lines.

Theory of operation
-------------------
scapy dissects each frame (``lo`` frames carry an all-zero Ethernet header).
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
import struct


@dataclasses.dataclass(frozen=True)
class Packet:
    """One TCP segment as a page shows it."""

    index: int
    time_ns: int  #: kernel timestamp, ns since the epoch
    ip: str  #: "IP" or "IP6"
    src: str
    sport: int
    dst: str
    dport: int
    flags: str  #: tcpdump letters: "S", "S.", "F.", "P.", "R", "R."
    seq: int  #: relative to this direction's ISN (absolute when no SYN was seen)
    ack: int | None  #: relative to the other direction's ISN; None without ACK
    win: int
    length: int  #: payload bytes
    options: str  #: "mss 65495,sackOK,TS,nop,wscale 7" ("" when none)
    payload: bytes = b""
    frame: int = 0  #: index of the captured frame it came from

    @property
    def source(self) -> str:
        return f"{self.src}.{self.sport}"

    @property
    def destination(self) -> str:
        return f"{self.dst}.{self.dport}"

    def line(self, t0_ns: int) -> str:
        """The tcpdump-style line, time relative to `t0_ns`."""
        return f"{(self.time_ns - t0_ns) / 1e9:9.6f} {self.ip} {self.source} > {self.destination}: {self.text()}"

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


def flag_text(bits: int) -> str:
    """tcpdump's flag letters (print-tcp.c order): F S R P . U E W; "none" for none."""
    letters = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."),
               (0x20, "U"), (0x40, "E"), (0x80, "W"))
    return "".join(letter for bit, letter in letters if bits & bit) or "none"


def option_text(options: list) -> str:
    """scapy's TCP options as tcpdump names them, timestamp values left out."""
    names = []
    for name, value in options:
        if name == "MSS":
            names.append(f"mss {value}")
        elif name == "SAckOK":
            names.append("sackOK")
        elif name == "Timestamp":
            names.append("TS")
        elif name == "NOP":
            names.append("nop")
        elif name == "WScale":
            names.append(f"wscale {value}")
        elif name == "EOL":
            names.append("eol")
        elif name == "SAck":
            names.append("sack")
        else:
            names.append(str(name).lower())
    return ",".join(names)


def dissect(frames: list[tuple[int, bytes]]) -> list[Packet]:
    """Dissect Ethernet frames into TCP packets (other protocols are skipped)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    raw = []
    for number, (time_ns, data) in enumerate(frames):
        frame = Ether(data)
        if TCP not in frame:
            continue
        ip_layer = frame[IP] if IP in frame else frame[IPv6]
        tcp = frame[TCP]
        raw.append((time_ns, "IP" if IP in frame else "IP6", ip_layer.src, tcp.sport, ip_layer.dst,
                    tcp.dport, int(tcp.flags), tcp.seq, tcp.ack, tcp.window, len(tcp.payload),
                    option_text(tcp.options), bytes(tcp.payload), number))
    isn: dict[tuple, int] = {}
    for r in raw:
        if r[6] & 0x02:  # SYN
            isn.setdefault((r[2], r[3], r[4], r[5]), r[7])
    packets = []
    for i, (t, ip, src, sport, dst, dport, bits, seq, ack, win, length, opts, payload, number) in enumerate(raw):
        mine = isn.get((src, sport, dst, dport))
        theirs = isn.get((dst, dport, src, sport))
        rel_seq = (seq - mine) % 2**32 if mine is not None else seq
        rel_ack = None
        if bits & 0x10:
            rel_ack = (ack - theirs) % 2**32 if theirs is not None else ack
        packets.append(Packet(i, t, ip, src, sport, dst, dport, flag_text(bits), rel_seq, rel_ack,
                              win, length, opts, payload, number))
    return packets


def pcap_bytes(frames: list[tuple[int, bytes]]) -> bytes:
    """A nanosecond-resolution pcap file (LINKTYPE_ETHERNET) holding `frames`."""
    out = [struct.pack("=IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
    for time_ns, data in frames:
        sec, nsec = divmod(time_ns, 1_000_000_000)
        out.append(struct.pack("=IIII", sec, nsec, len(data), len(data)))
        out.append(data)
    return b"".join(out)
