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
"""

from __future__ import annotations

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

_TIMESTAMP = struct.Struct("@ll")


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured frame: kernel timestamp (ns since the epoch) and its bytes."""

    time_ns: int
    data: bytes


class CaptureError(RuntimeError):
    """The capture could not be completed faithfully."""


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


class Capture:
    """A packet socket on one interface, read without threads."""

    def __init__(self, ifname: str = "lo") -> None:
        self.frames: list[Frame] = []
        # Protocol 0 at creation, ETH_P_ALL at bind: the kernel then registers its
        # packet hook once instead of twice, and the second registration would
        # cost an RCU grace period (synchronize_net, ~16 ms here). Closing costs one anyway.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        except OSError:  # needs CAP_NET_ADMIN in the initial namespace
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)
        self._marker_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._marker_rx.bind(("127.0.0.1", 0))
        self._token = os.urandom(16)
        self._stopped = False

    def close(self) -> None:
        self.sock.close()
        self._marker_rx.close()

    def drops(self) -> int:
        """Frames the kernel dropped because our queue was full (reading resets it)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return struct.unpack("II", raw)[1]

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
            raise CaptureError("the flush marker never reached the capture: packets were lost")
        lost = self.drops()
        if lost:
            raise CaptureError(f"the kernel dropped {lost} frames: the capture queue overflowed")
        return self.frames
