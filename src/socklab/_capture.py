"""Packet capture on ``lo``, and the flush that ends it.

Theory of operation
-------------------
The capture is a packet socket (``AF_PACKET``, ``ETH_P_ALL``) bound to ``lo``
in the scenario's namespace. It listens from the moment ``bind()`` returns, so
there is no "capture not started yet" race and no thread: frames simply queue
in the socket until the lab reads them.

On ``lo`` every frame passes a packet socket twice, once leaving
(``PACKET_OUTGOING``) and once arriving. We keep the leaving copy, so each
packet appears once, as in ``tcpdump -i lo``. The leaving copy is delivered
synchronously inside the sender's transmit path (``dev_queue_xmit_nit``), which
gives the flush its guarantee: when ``sendto()`` of the marker datagram has
returned, every packet transmitted before it is already in our queue. Reading
until the marker therefore loses nothing and needs no sleep.

Packets that a later event will cause (the RST answering data that is still
being processed) are not "transmitted before"; a scenario that means to show
one waits for it (``Lab.wait_packet``).

The kernel timestamps each frame (``SO_TIMESTAMPNS``); the frames go to the
parent as bytes, where ``_trace`` dissects them (the same dissector the lab
uses here to wait for a packet) and writes the pcap file.

A classic BPF program (``SO_ATTACH_FILTER``), attached before ``bind()`` so no
frame is queued without it, decides in the kernel what reaches our queue. It
always drops the arriving copy of each loopback frame (``pkttype`` is not
``PACKET_OUTGOING``), which halves what the queue holds. In the host's
namespace it also drops every frame that is not the run's: only TCP to or
from the run's own ports (``_ports``) and the flush marker pass, so another
program's loopback traffic never enters this process's memory. A new port
replaces the program (``watch``).

Closing a packet socket waits for an RCU grace period (``packet_release`` calls
``synchronize_net``: 12 to 16 ms here), and at a process's exit that wait comes
before the exit is reported, so every run would pay it on its way out: the
supervisor waits for the scenario's process, the parent for the supervisor.
``close_unwaited`` hands the last reference to the kernel instead. It sends the
socket, together with one end of a fresh ``AF_UNIX`` datagram pair, over that
pair to that same end, and closes everything: the pair's end is then referenced
only by a message in its own queue, a cycle that only the unix socket garbage
collector can free. On this kernel (6.18) the collector runs in a kernel
worker, and a file whose last reference a kernel thread drops is closed by the
kernel's delayed ``fput``: the packet socket is released ~8 ms later, by the
kernel, with no process waiting (measured: 0.06 ms for the call, 16 ms for a
plain ``close``). Where the collector runs in the closing task, it costs what a
plain close costs, and nothing is lost either way.

The queue is bounded (``SO_RCVBUF``: as root we force 32 MiB; other users get
at most ``net.core.rmem_max``). Each lab step drains it; a scenario that moves
more between two steps than it holds overflows it, and the flush then says so.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import select
import socket
import struct
import time

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35  # asm-generic/socket.h (SO_TIMESTAMPNS_OLD)
PACKET_STATISTICS = 6
SOL_PACKET = 263
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4

# Classic BPF (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS, _LD_H_IND = 0x20, 0x28, 0x30, 0x48
_LDX_B_MSH, _JEQ, _JSET, _RET = 0xB1, 0x15, 0x45, 0x06
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
_ACCEPT, _DROP = 0x40000, 0

_TIMESTAMP = struct.Struct("@ll")


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured frame: kernel timestamp (ns since the epoch) and its bytes."""

    time_ns: int
    data: bytes


class CaptureError(RuntimeError):
    """The capture could not be completed faithfully."""


def filter_program(tcp_ports: set[int] | None, udp_port: int) -> list[tuple[int, int, int, int]]:
    """The capture's classic BPF program: outgoing frames only; with `tcp_ports`, only
    TCP to or from those ports and UDP to `udp_port` (the flush marker).

    Instructions are ``(code, jump if true, jump if false, k)``, jumps relative.
    """
    program: list[list] = []  # jumps as label names until resolved
    labels: dict[str, int] = {}

    def op(code: int, k: int = 0, yes: str | None = None, no: str | None = None) -> None:
        program.append([code, yes, no, k])

    def label(name: str) -> None:
        labels[name] = len(program)

    def either_port(load: int, first: int, second: int) -> None:
        for offset in (first, second):
            op(load, offset)
            for port in sorted(tcp_ports or ()):
                op(_JEQ, port, yes="accept")
        op(_RET, _DROP)

    op(_LD_W_ABS, _SKF_AD_PKTTYPE)
    op(_JEQ, PACKET_OUTGOING, no="drop")
    if tcp_ports is not None:
        op(_LD_H_ABS, 12)  # ethertype
        op(_JEQ, 0x0800, yes="ip4")
        op(_JEQ, 0x86DD, yes="ip6", no="drop")
        label("ip4")
        op(_LD_H_ABS, 20)
        op(_JSET, 0x1FFF, yes="drop")  # a later fragment: no ports in it
        op(_LDX_B_MSH, 14)  # X = IPv4 header length
        op(_LD_B_ABS, 23)  # protocol
        op(_JEQ, socket.IPPROTO_UDP, yes="udp4")
        op(_JEQ, socket.IPPROTO_TCP, no="drop")
        either_port(_LD_H_IND, 14, 16)
        label("udp4")
        op(_LD_H_IND, 16)
        op(_JEQ, udp_port, yes="accept", no="drop")
        label("ip6")
        op(_LD_B_ABS, 20)  # next header
        op(_JEQ, socket.IPPROTO_UDP, yes="udp6")
        op(_JEQ, socket.IPPROTO_TCP, no="drop")
        either_port(_LD_H_ABS, 54, 56)
        label("udp6")
        op(_LD_H_ABS, 56)
        op(_JEQ, udp_port, yes="accept", no="drop")
    label("accept")
    op(_RET, _ACCEPT)
    label("drop")
    op(_RET, _DROP)
    return [(code, labels[yes] - i - 1 if yes else 0, labels[no] - i - 1 if no else 0, k)
            for i, (code, yes, no, k) in enumerate(program)]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach (or replace) a classic BPF filter on `sock`."""
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(program), ctypes.addressof(code)))


_timestamp_holder: socket.socket | None = None


def keep_timestamping_on() -> None:
    """Keep the kernel's packet timestamping switched on for this process's lifetime.

    Packets get a timestamp only while some socket anywhere asks for one; the
    kernel turns that global switch on lazily, from a workqueue
    (``net_enable_timestamp``), and off again when the last such socket closes.
    A capture opened in a fresh child could then see its first frames stamped
    late, when read. One socket held by the parent keeps the switch on, so a
    child's capture timestamps every frame as it is sent.
    """
    global _timestamp_holder
    if _timestamp_holder is None:
        _timestamp_holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _timestamp_holder.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def close_unwaited(sock: socket.socket) -> None:
    """Close `sock` (a packet socket) without waiting for its RCU grace period: the kernel
    releases it a few ms later (see the theory of operation)."""
    if sock.fileno() < 0:
        return
    try:
        keep, bin_ = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:  # out of descriptors: the plain close still closes
        sock.close()
        return
    try:
        socket.send_fds(keep, [b"\0"], [sock.fileno(), bin_.fileno()])
    except OSError:
        pass  # the plain close below does it
    finally:
        sock.close()
        bin_.close()
        keep.close()


class Capture:
    """A packet socket on one interface, read without threads."""

    def __init__(self, ifname: str = "lo", ports: set[int] | None = None) -> None:
        """Capture on `ifname`: every frame (a private namespace), or with `ports`, only the
        TCP frames of those ports (the host's namespace: see ``watch``)."""
        self.frames: list[Frame] = []
        self.ports = None if ports is None else set(ports)
        self.dropped = 0
        self._marker_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._marker_rx.bind(("127.0.0.1", 0))
        # Protocol 0 at creation, ETH_P_ALL at bind: the kernel then registers its
        # packet hook once instead of twice, and the second registration would
        # cost an RCU grace period (synchronize_net, ~16 ms here). Closing costs one too,
        # which close() leaves to the kernel (close_unwaited).
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        except OSError:  # needs CAP_NET_ADMIN in the initial namespace
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._attach()  # before bind: no frame is ever queued unfiltered
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)
        self._token = os.urandom(16)
        self._stopped = False

    def _attach(self) -> None:
        attach_filter(self.sock, filter_program(self.ports, self._marker_rx.getsockname()[1]))

    def watch(self, port: int) -> None:
        """Let the TCP frames of `port` through too (a capture made with `ports`)."""
        if self.ports is not None and port not in self.ports:
            self.ports.add(port)
            self._attach()

    def queue_size(self) -> int:
        """The bytes of frames the kernel will hold for us before it drops."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def close(self) -> None:
        """Close the capture; the packet socket is released by the kernel moments later."""
        close_unwaited(self.sock)
        self._marker_rx.close()

    def drops(self) -> int:
        """Frames the kernel dropped so far because our queue was full."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reading resets the kernel's count
        self.dropped += struct.unpack("II", raw)[1]
        return self.dropped

    def read_available(self) -> list[Frame]:
        """Read every queued frame; return the new ones (outgoing copies only).

        After ``flush`` the capture is stopped: nothing more is read.
        """
        if self._stopped:
            return []
        new = []
        while True:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(262144, socket.CMSG_SPACE(16))
            except BlockingIOError:
                break
            if addr[2] != socket.PACKET_OUTGOING:
                continue
            stamp = time.time_ns()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESTAMP.unpack(value[: _TIMESTAMP.size])
                    stamp = sec * 1_000_000_000 + nsec
            new.append(Frame(stamp, data))
        self.frames.extend(new)
        return new

    def wait(self, predicate, timeout: float) -> Frame:
        """Wait until a frame (already captured or new) satisfies `predicate`."""
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            self.read_available()
            for frame in self.frames[seen:]:
                if predicate(frame):
                    return frame
            seen = len(self.frames)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            select.select([self.sock], [], [], left)

    def flush(self) -> list[Frame]:
        """Send the marker, read up to it, stop. Keep and return the frames before the marker."""
        self.read_available()  # make room for the marker
        self._check_overflow()
        port = self._marker_rx.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(self._token, ("127.0.0.1", port))
        self.read_available()
        for i, frame in enumerate(self.frames):
            if frame.data.endswith(self._token):
                self.frames = self.frames[:i]  # the marker and anything after it are dropped
                self._stopped = True
                break
        else:
            self._check_overflow()
            raise CaptureError("the flush marker never reached the capture: packets were lost")
        self._check_overflow()
        return self.frames

    def _check_overflow(self) -> None:
        lost = self.drops()
        if lost:
            raise CaptureError(
                f"the capture overflowed: the kernel dropped {lost} frames because the capture's queue "
                f"({self.queue_size() >> 10} KiB) was full, so the trace would be incomplete. Between two "
                f"lab steps (each one empties the queue) the scenario sent more than the queue holds. "
                f"Fix: send less between two lab steps, or run as root (a 32 MiB queue), or raise "
                f"net.core.rmem_max (sudo sysctl -w net.core.rmem_max=33554432)")
