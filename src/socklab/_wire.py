"""The link between two hosts: a relay with a delay, rules, and its own capture.

Theory of operation
-------------------
The two hosts' interfaces are the far ends of two veth pairs whose near ends
(``w0`` toward the client, ``w1`` toward the server) sit in a third, "wire",
namespace with no addresses, so its kernel forwards nothing. One thread,
the relay, reads every frame that arrives on ``w0`` or ``w1`` from one packet
socket (``AF_PACKET``, ``ETH_P_ALL``, bound to no interface, with
``PACKET_IGNORE_OUTGOING`` so it never reads back what it sent) and writes it
out of the other one. Whatever
the link does to a packet happens in between, decided by the scenario:

* **delay**: a frame leaves at the kernel's timestamp of its arrival plus the
  one-way delay (``SO_TIMESTAMPNS``, the clock the lab's capture uses). The
  queue is a heap of deadlines and the relay sleeps in ``select`` until the
  earliest one or the next frame, never for a fixed time. Deadlines in one
  direction grow with the arrival stamps, so a delay alone never reorders.
* **rules** (``drop``, ``hold``, ``slow``), tried in the order they were added
  on every TCP segment (dissected by ``_trace.parse``, numbers absolute): the
  first rule whose predicate matches, and which has matches left (``count``),
  decides. A held frame waits for ``release()``, then leaves at its deadline
  or at once, whichever is later: frames held in both directions and released
  together cross each other on the link (a deterministic simultaneous close).
  ``slow`` adds to one packet's delay, so later packets overtake it.
* **cut** and **restore**: while cut, every frame (TCP or not) entering the
  link, or due to leave it, is lost, as on an unplugged cable.

The relay is also the capture of the link: every frame is recorded with the
time it entered the link, the time it left (None when it never did) and its
fate, so a ladder can draw sloped arrows between the two hosts, and the same
frames as ``(time, bytes)`` pairs are what ``_trace.dissect`` and a pcap take.
Waiting for a frame (``wait_packet``, ``wait_held``) waits on a condition the
relay signals with each change: no sleeps, no polling.

The relay is a thread of the scenario's process, so the rules can be any
Python predicate the scenario writes, changed at any moment. To leave with
its frames on time it must get the interpreter's lock promptly: while a link
runs, the thread switch interval is lowered from 5 ms to 0.2 ms, and where
the kernel allows it (root) the relay thread is scheduled ``SCHED_FIFO`` so a
busy machine does not make it late.

The relay stops when the link is closed: the thread is woken through a pipe,
joined, and the frames still on the link are recorded as lost.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

from . import _capture, _trace

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h (Linux 4.20)
SO_TIMESTAMPNS = 35
_TIMESTAMP = struct.Struct("@ll")
#: The interpreter's thread switch interval while a link runs (seconds; Python's default is 0.005).
SWITCH_INTERVAL = 0.0002
#: The relay thread's real-time priority where allowed (SCHED_FIFO, 1-99): low, but above every normal task.
RELAY_PRIORITY = 10

#: What became of a frame on the link.
DELIVERED, DROPPED, CUT, HELD, QUEUED, LOST, INJECTED = (
    "delivered", "dropped", "cut", "held", "queued", "lost", "injected")

Predicate = Callable[[_trace.Packet], bool]


@dataclasses.dataclass(frozen=True)
class LinkFrame:
    """One frame that crossed (or tried to cross) the link."""

    index: int
    sender: str  #: the host that sent it ("client" or "server"), or "wire" for an injected frame
    receiver: str  #: the host it was going to
    sent_ns: int  #: when it entered the link (kernel timestamp, ns since the epoch)
    arrived_ns: int | None  #: when it left the link toward `receiver`; None if it never did
    fate: str  #: delivered, dropped (by a rule), cut, held, queued, lost (link closed) or injected
    rule: str | None  #: the rule that dropped, held or slowed it
    data: bytes

    @property
    def packet(self) -> _trace.Packet | None:
        """The TCP segment it carries (numbers absolute; its ``frame`` is this index), or None."""
        return _trace.parse(self.data, self.sent_ns, self.index)

    @property
    def settled(self) -> bool:
        """Its fate is final: no longer queued or held on the link."""
        return self.fate not in (QUEUED, HELD)

    @property
    def transit(self) -> float | None:
        """Seconds it spent on the link, or None if it never left."""
        return None if self.arrived_ns is None else (self.arrived_ns - self.sent_ns) / 1e9


@dataclasses.dataclass(eq=False)
class Rule:
    """What the link does to the segments a predicate matches; ``remove()`` ends it."""

    action: str  #: "drop", "hold" or "slow"
    predicate: Predicate
    count: int | None  #: matches left; None for no limit
    name: str
    extra_ns: int = 0
    matched: int = 0  #: how many segments it has taken
    _link: Link | None = None

    def remove(self) -> None:
        if self._link is not None:
            self._link._remove(self)

    def __enter__(self) -> Rule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Link:
    """A relay between two packet sockets, one per host side; runs a thread once started."""

    def __init__(self, sock: socket.socket, ends: dict[str, str], delay: float = 0.0) -> None:
        """`sock` from ``open_wire()``; `ends` maps each host's name to its interface here."""
        self._sock = sock
        (self._a, if_a), (self._b, if_b) = ends.items()
        self._ifname = {self._a: if_a, self._b: if_b}
        self._side = {if_a: self._a, if_b: self._b}
        self._other = {self._a: self._b, self._b: self._a}
        self.delay_ns = round(delay * 1e9)
        self._frames: list[LinkFrame] = []
        self._packets: list[_trace.Packet | None] = []  # each frame dissected once, as it enters
        self._queue: list[tuple[int, int]] = []  # heap of (deadline ns, frame index)
        self._held: list[int] = []
        self._rules: list[Rule] = []
        self._cut = False
        self._changed = threading.Condition()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._names = itertools.count(1)
        self.error: BaseException | None = None  #: what stopped the relay, if it failed
        self._passes = 0  # turns of the relay's loop (each reads everything waiting on its socket)
        #: Whether the relay runs at real-time priority (root only): delays then hold to ~0.5 ms on a
        #: loaded machine; without it, to what the scheduler gives (measured: up to 20 ms at load 8 on 2 cores).
        self.realtime = False

    @staticmethod
    def open_wire() -> socket.socket:
        """The relay's packet socket: every interface of the calling thread's namespace.

        One socket for both ends, bound to no interface (it reads all of them and says which
        one in each frame's address; it writes to the one named in ``sendto``). It is closed
        with ``_capture.close_unwaited``: a plain close would wait for an RCU grace period
        (``synchronize_net``, ~12 ms here).
        """
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- the scenario's controls --------------------------------------------------
    @property
    def delay(self) -> float:
        """The one-way delay in seconds; set it to change it for the frames entering from now on."""
        return self.delay_ns / 1e9

    @delay.setter
    def delay(self, seconds: float) -> None:
        with self._changed:
            self.delay_ns = round(seconds * 1e9)

    def forget(self) -> None:
        """In a process that will not relay (the supervisor, once it has forked the scenario's
        process): close this process's copy of the relay's socket, without waiting for its RCU
        grace period; the relay's own copy is untouched."""
        _capture.close_unwaited(self._sock)

    def start(self) -> None:
        # The relay needs the GIL within microseconds of its deadline; by default a busy
        # scenario thread would keep it for up to 5 ms (sys.getswitchinterval()).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread = threading.Thread(target=self._relay, name="socklab-link", daemon=True)
        self._thread.start()

    def drop(self, predicate: Predicate, *, count: int | None = None, name: str | None = None) -> Rule:
        """Drop the TCP segments `predicate` matches (at most `count` of them)."""
        return self._add("drop", predicate, count, name)

    def hold(self, predicate: Predicate, *, count: int | None = None, name: str | None = None) -> Rule:
        """Keep the matching segments on the link until ``release()``."""
        return self._add("hold", predicate, count, name)

    def slow(self, predicate: Predicate, extra: float, *, count: int | None = None,
             name: str | None = None) -> Rule:
        """Delay the matching segments `extra` seconds more than the others (later ones overtake them)."""
        return self._add("slow", predicate, count, name, round(extra * 1e9))

    def release(self, *, reverse: bool = False) -> int:
        """Let every held frame go (in the order held, or reversed); return how many."""
        with self._changed:
            held, self._held = self._held, []
            now = time.time_ns()
            for i in reversed(held) if reverse else held:
                frame = self._frames[i]
                deadline = max(now, frame.sent_ns + self.delay_ns)
                self._frames[i] = dataclasses.replace(frame, fate=QUEUED)
                heapq.heappush(self._queue, (deadline, i) if not reverse else (deadline, -i))
            self._changed.notify_all()
        self._wake()
        return len(held)

    def cut(self) -> None:
        """Unplug the link: every frame entering it or due to leave it is lost, until ``restore()``."""
        with self._changed:
            self._cut = True

    def restore(self) -> None:
        with self._changed:
            self._cut = False

    def frames(self) -> list[LinkFrame]:
        """Every frame so far, in the order they entered the link."""
        with self._changed:
            return list(self._frames)

    def wait_packet(self, flags: str | None = None, *, sender: str | None = None,
                    match: Predicate | None = None, after: int = 0, fate: str | None = None,
                    timeout: float = 2.0) -> LinkFrame:
        """Wait for a TCP segment with exactly these tcpdump `flags` ("F.", "S") from `sender`,
        matching `match`, skipping `after` earlier ones; with `fate` (say ``"delivered"``),
        until that segment's fate is that. Returns the frame; TimeoutError otherwise."""
        scanned, seen, hit = 0, 0, -1  # carried across wake-ups: each frame is looked at once

        def find() -> LinkFrame | None:
            nonlocal scanned, seen, hit
            while hit < 0 and scanned < len(self._frames):
                frame, packet = self._frames[scanned], self._packets[scanned]
                scanned += 1
                if packet is None or (flags is not None and packet.flags != flags):
                    continue
                if (sender is not None and frame.sender != sender) or (match is not None and not match(packet)):
                    continue
                seen += 1
                if seen > after:
                    hit = frame.index
            if hit < 0:
                return None
            frame = self._frames[hit]
            if fate is None or frame.fate == fate or frame.settled:
                return frame  # found, or its fate is settled and is another one
            return None

        found = self._wait(find, timeout)
        if found is not None and fate is not None and found.fate != fate:
            raise TimeoutError(f"the [{flags or 'any'}] segment from {sender or 'either host'} (after={after}) "
                               f"will never be {fate}: it was {found.fate}"
                               + (f" by rule {found.rule!r}" if found.rule else ""))
        if found is None:
            raise TimeoutError(f"no [{flags or 'any'}] segment from {sender or 'either host'} "
                               f"(after={after}, fate={fate}) on the link within {timeout}s")
        return found

    def wait_settled(self, frame: LinkFrame, timeout: float = 2.0) -> LinkFrame:
        """Wait until `frame` is no longer on its way (delivered, dropped, cut; a held frame waits
        for ``release()``); return it as it is then."""
        found = self._wait(lambda: (f if (f := self._frames[frame.index]).settled else None),
                           timeout)
        if found is None:
            raise TimeoutError(f"frame {frame.index} ({frame.packet.flags if frame.packet else '?'} from "
                               f"{frame.sender}) was still {self._frames[frame.index].fate} on the link after "
                               f"{timeout}s")
        return found

    def wait_held(self, n: int, timeout: float = 2.0) -> list[LinkFrame]:
        """Wait until `n` frames are held on the link; return them."""
        found = self._wait(lambda: [self._frames[i] for i in self._held] if len(self._held) >= n else None,
                           timeout)
        if found is None:
            raise TimeoutError(f"{len(self._held)} frames held on the link, not {n}, after {timeout}s")
        return found

    def inject(self, toward: str, data: bytes) -> LinkFrame:
        """Send an Ethernet frame to host `toward` now, as if it came down the link (a scripted peer)."""
        with self._changed:
            now = time.time_ns()
            self._sock.sendto(data, (self._ifname[toward], 0))
            frame = LinkFrame(len(self._frames), "wire", toward, now, now, INJECTED, None, data)
            self._frames.append(frame)
            self._packets.append(_trace.parse(data, now, frame.index))
            self._changed.notify_all()
        return frame

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until the relay has read every frame already waiting on its socket: a frame the
        kernel handed to the link (and stamped) before this call is in ``frames()`` after it."""
        with self._changed:
            target = self._passes + 2  # a turn that began after this call read the socket

        def done() -> bool | None:
            if self._passes >= target:
                return True
            self._wake()  # the relay may sleep in select until its next deadline
            return None

        self._wake()
        if self._wait(done, timeout) is None:
            raise TimeoutError(f"the link's relay did not read its socket within {timeout}s")

    def close(self) -> None:
        """Stop and join the relay, close its sockets; frames still on the link become lost (idempotent)."""
        if self._wake_w < 0:
            return
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            sys.setswitchinterval(self._switch_interval)
            self._thread = None
        with self._changed:
            for i, frame in enumerate(self._frames):
                if not frame.settled:
                    self._frames[i] = dataclasses.replace(frame, fate=LOST)
            self._queue, self._held = [], []
        _capture.close_unwaited(self._sock)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- internals -------------------------------------------------------------------
    def _add(self, action: str, predicate: Predicate, count: int | None, name: str | None,
             extra_ns: int = 0) -> Rule:
        if not callable(predicate):
            raise TypeError(f"a link rule needs a predicate on a packet, not {predicate!r}")
        rule = Rule(action, predicate, count, name or f"{action} #{next(self._names)}", extra_ns, 0, self)
        with self._changed:
            self._rules.append(rule)
        return rule

    def _remove(self, rule: Rule) -> None:
        with self._changed:
            if rule in self._rules:
                self._rules.remove(rule)

    def _wait(self, find: Callable[[], object], timeout: float):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.error is not None:
                    raise RuntimeError(f"the link's relay failed: {self.error!r}") from self.error
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:  # already awake
                pass

    def _relay(self) -> None:
        try:  # wake on time on a busy machine; only root may (CAP_SYS_NICE in the first user namespace)
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(RELAY_PRIORITY))
            self.realtime = True
        except OSError:
            self.realtime = False
        fds = [self._sock.fileno(), self._wake_r]
        try:
            while not self._stopping:
                with self._changed:
                    due = self._queue[0][0] if self._queue else None
                timeout = None if due is None else max(0.0, (due - time.time_ns()) / 1e9)
                ready, _, _ = select.select(fds, [], [], timeout)
                for fd in ready:
                    if fd == self._wake_r:
                        os.read(self._wake_r, 4096)
                    else:
                        self._receive()
                self._send_due()
        except BaseException as e:  # noqa: BLE001 - reported to whoever waits on the link
            with self._changed:
                self.error = e
                self._changed.notify_all()

    def _receive(self) -> None:
        while True:
            try:
                data, ancillary, _flags, address = self._sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return
            side = self._side.get(address[0])
            if side is None:  # not one of the link's ends
                continue
            stamp = time.time_ns()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESTAMP.unpack(value[: _TIMESTAMP.size])
                    stamp = sec * 1_000_000_000 + nsec
            self._admit(side, stamp, data)

    def _admit(self, side: str, stamp: int, data: bytes) -> None:
        """Decide a new frame's fate: cut, a rule's, or the delay queue."""
        with self._changed:
            index = len(self._frames)
            fate, rule_name, deadline = QUEUED, None, stamp + self.delay_ns
            packet = _trace.parse(data, stamp, index)
            self._packets.append(packet)
            if self._cut:
                fate = CUT
            elif packet is not None:
                for rule in self._rules:
                    if (rule.count is None or rule.matched < rule.count) and rule.predicate(packet):
                        rule.matched += 1
                        rule_name = rule.name
                        fate = {"drop": DROPPED, "hold": HELD, "slow": QUEUED}[rule.action]
                        deadline += rule.extra_ns
                        break
            self._frames.append(LinkFrame(index, side, self._other[side], stamp, None, fate, rule_name, data))
            if fate == QUEUED:
                heapq.heappush(self._queue, (deadline, index))
            elif fate == HELD:
                self._held.append(index)
            self._changed.notify_all()

    def _send_due(self) -> None:
        with self._changed:
            now = time.time_ns()
            while self._queue and self._queue[0][0] <= now:
                _deadline, key = heapq.heappop(self._queue)
                index = abs(key)
                frame = self._frames[index]
                if self._cut:
                    self._frames[index] = dataclasses.replace(frame, fate=CUT)
                    continue
                # stamped before sending: delivery into the host is synchronous, and its answer
                # can be stamped on our socket before sendto() returns
                left = time.time_ns()
                self._sock.sendto(frame.data, (self._ifname[frame.receiver], 0))
                self._frames[index] = dataclasses.replace(frame, arrived_ns=left, fate=DELIVERED)
            self._passes += 1
            self._changed.notify_all()

