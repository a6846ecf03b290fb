"""The kernel's own account of a run: TCP tracepoint events of the run's network namespace and its hosts'.

Theory of operation
-------------------
Five tracepoints say what the kernel did to TCP, with the kernel's own words:
``sock:inet_sock_set_state`` (every state change, including those too brief
for a snapshot), ``tcp:tcp_send_reset`` (every RST sent, with ``enum
sk_rst_reason`` and the sending socket's state), ``tcp:tcp_receive_reset``,
``tcp:tcp_retransmit_skb`` and ``skb:kfree_skb`` (a dropped packet and ``enum
skb_drop_reason``). Tracepoints carry no network namespace, and port or pid
filters are not enough (measured: foreign events on the same ports; events run
from timers and softirqs under other pids). So each tracepoint gets a small BPF
program (``_kprogram``, assembled with ``_bpf``) that follows the event's socket to its namespace,
``sk->__sk_common.skc_net.net->ns.inum`` (offsets from the kernel's BTF), or,
when there is no socket, the packet's device, ``skb->dev->nd_net.net->ns.inum``,
and compares that inode with the watched ones held in a BPF array map: the
run's own namespace, and up to three more (the hosts of a two-host topology,
``_hosts``), each a slot. Only a match is copied, with ``bpf_ktime_get_ns()``
(CLOCK_MONOTONIC), a generation number and the number of the slot that matched,
into one BPF ring buffer that this process reads through ``mmap``. The slot
says which host an event happened on (:attr:`KernelEvent.host`), exactly: the
hosts may use the same addresses and ports, the run's namespace too.

Rules, each from a measured trap:

* Attach once per process, lazily, and stay attached: attaching costs ~10 ms,
  detaching 0.4-0.5 s. A run only writes the map (:meth:`Recorder.watch`,
  :meth:`Recorder.stop`), one bpf(2) call each.
* A program belongs to the tracepoint, not to our perf event, and its return
  value is shared by every perf user of that tracepoint: ours return 1, so
  ``perf record`` elsewhere on the machine sees what it would without us.
* perf cannot stamp tracepoints with CLOCK_REALTIME (the capture's clock): the
  program stamps CLOCK_MONOTONIC, and :meth:`Recorder.watch` measures the offset
  to CLOCK_REALTIME (the narrowest of a few bracketing reads).
* Namespace inode numbers are recycled once a namespace dies: stop watching
  before any watched namespace dies (its last process exits, its last
  descriptor and socket close).
* Knowing that everything has been read, without sleeping: the namespace's
  process calls :func:`end_marker` last, which causes one state change
  (``LISTEN`` -> ``CLOSE`` on :data:`MARKER_PORT`) synchronously in its system
  call. The ring buffer is ordered by reservation and the reader never passes a
  record still being written, so once the marker is read every earlier event of
  the run has been read, from every CPU and every watched namespace. Only the
  run's own namespace makes the marker (a host's sockets on port 1 are events
  like any other).
* Records left over from an earlier run (a timer firing after its stop) carry an
  older generation and are dropped.
* TIME_WAIT is never the *new* state of a full socket here: the kernel swaps the
  socket for a timewait mini-socket, so TIME_WAIT shows as the ``state`` of the
  mini-socket when it sends a reset (reason ``TCP_TIMEWAIT_SOCKET``).

Known limit of the machines this site is built on (a Firecracker sandbox,
Linux 6.18.44-fc), measured: no BPF or perf program runs for any tracepoint hit
while a thread of the sandbox's agent (pid 1, ``/process_api``) is ``current``,
including a softirq that happens to run on top of it, and nothing counts it
(``recursion_misses`` stay 0, the ring refuses nothing). ftrace still records
such a softirq's events. In 9,400 runs of the tests' reference scenario 17
lacked one event, always FIN_WAIT1 -> FIN_WAIT2 (the ACK of a FIN, handled in a
softirq); in a 3,000-run batch all 8 such events that ftrace saw on top of
pid 1's threads were lost, and none of about 2,990 in any other context. A raw
tracepoint program missed exactly the same events, so no other attachment
helps (fentry is refused here); plain perf sampling of ``irq:softirq_entry`` is
blind in that context too. Once, in a docs build, an orphan's FIN_WAIT1 ->
CLOSE on its timer was lost the same way. A machine without such an agent
should not lose these events. A run tells where the kernel's own rules prove a
loss (``_events.lost``: a socket's changes do not chain, or it left the socket
table with no change to CLOSE): its events table warns, and a claim on that
socket's transitions is reported unchecked, never broken or passed. The tests
measure the rate.

Where recording is impossible (not root, inside a user namespace, no BTF, bpf(2)
refused) :func:`recorder` returns :class:`Unavailable` with the reason and the
fix; where a kernel lacks a tracepoint or a field (Linux 6.1's
``tcp_send_reset`` has no ``reason``) the recorder works and lists what is
missing in :attr:`Recorder.missing`.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping

from . import _bpf, _kprogram
from ._kevents import (
    REC_HEAD,
    Decoder,
    Dropped,
    KernelEvent,
    ResetReceived,
    ResetSent,
    Retransmit,
    StateChange,
    Unavailable,
    strip_prefix,
)
from ._kprogram import SLOTS
from ._vocab import State

__all__ = ["Dropped", "KernelEvent", "Recorder", "ResetReceived", "ResetSent", "Retransmit", "StateChange",
           "Unavailable", "end_marker", "netns_inode", "recorder"]

TRACEPOINTS = ("sock:inet_sock_set_state", "tcp:tcp_send_reset", "tcp:tcp_receive_reset",
               "tcp:tcp_retransmit_skb", "skb:kfree_skb")

#: The port of the end marker's listening socket (see :func:`end_marker`); scenarios must not listen on it.
MARKER_PORT = 1
RING_SIZE = 1 << 20



# -- the namespace's side ----------------------------------------------------------------------------------


def end_marker() -> None:
    """Cause the end marker: call it in the watched namespace, after the scenario, before stop().

    A socket listens on :data:`MARKER_PORT` and closes: the ``LISTEN`` -> ``CLOSE``
    state change happens inside ``close()`` on this CPU, so its record is in the
    ring buffer when this returns.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", MARKER_PORT))
        s.listen(0)


def netns_inode(pid: int | str = "self") -> int:
    """The inode number of a process's network namespace (what the programs compare with)."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def missing_parts(found: dict[str, _bpf.Tracepoint], missing: dict[str, str]) -> dict[str, str]:
    """What this kernel cannot record, {part: why}: absent tracepoints by name, and "reset reasons"."""
    out = {name.split(":")[1]: why for name, why in missing.items()}
    send = found.get("tcp:tcp_send_reset")
    if send is not None and "reason" not in send.fields:
        out["reset reasons"] = ("this kernel's tcp:tcp_send_reset has no reason field (added in Linux 6.10): "
                                "resets are recorded without their reason")
    return out


def _realtime_offset() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC in ns, from the narrowest of five bracketing reads."""
    best = None
    for _ in range(5):
        a = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        b = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) // 2)
    assert best is not None
    return best[1]


class Recorder:
    """The attached programs and the ring buffer of this process; watches one run (namespace and hosts) at a time."""

    def __init__(self) -> None:
        btf = _bpf.BTF.load()
        offsets = _kprogram.Offsets.from_btf(btf)
        found, missing = _bpf.read_tracepoints(list(TRACEPOINTS))
        self.missing = missing_parts(found, missing)
        send = found.get("tcp:tcp_send_reset")
        states = strip_prefix(btf.enum(containing="TCP_ESTABLISHED"), "TCP_")
        has_reason = send is not None and "reason" in send.fields
        rst = strip_prefix(btf.enum("sk_rst_reason"), "SK_RST_REASON_") if has_reason else {}
        try:
            drop = strip_prefix(btf.enum("skb_drop_reason"), "SKB_DROP_REASON_")
        except KeyError:
            drop = {}
        self._fds: list[int] = []
        self._progs: list[int] = []
        self._misses_at = btf.offset("bpf_prog_info.recursion_misses")
        self.missed = 0
        try:
            self._attach(found, offsets, states, rst, drop)
        except BaseException:
            self.close()
            raise
        self._generation = 0
        self._watching = 0
        self._offset = 0
        self._hosts: list[str] = [""]  # by slot: "" for the run's own namespace, then the hosts' names

    def _attach(self, found: dict[str, _bpf.Tracepoint], offsets: _kprogram.Offsets, states: dict[int, str],
                rst: dict[int, str], drop: dict[int, str]) -> None:
        self._watch_fd = self._keep(_bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, 4, 8 * SLOTS, 1))
        ring_fd = self._keep(_bpf.map_create(_bpf.BPF_MAP_TYPE_RINGBUF, 0, 0, RING_SIZE))
        self._stats_fd = self._keep(_bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, 4, 16, 1))
        self._ring = _bpf.RingBuffer(ring_fd, RING_SIZE)
        self._decoders: dict[int, Decoder] = {}
        for kind, name in enumerate(TRACEPOINTS, start=1):
            tp = found.get(name)
            if tp is None:
                continue
            code = _kprogram.build_program(tp, kind, offsets, self._watch_fd, ring_fd, self._stats_fd)
            prog = self._keep(_bpf.prog_load(code, "socklab_" + tp.name[:6]))
            self._progs.append(prog)
            perf = self._keep(_bpf.perf_tracepoint(tp.id))
            _bpf.attach(perf, prog)
            self._decoders[kind] = Decoder(tp, states, drop if tp.name == "kfree_skb" else rst)

    def _keep(self, fd: int) -> int:
        os.set_inheritable(fd, False)
        self._fds.append(fd)
        return fd

    def watch(self, netns_inode: int, hosts: Mapping[int, str] | None = None) -> None:
        """Start recording the events of the network namespace with this inode, and of `hosts` (only those).

        `hosts` maps the inodes of further namespaces to host names, ``{inode: "client", ...}``
        (at most ``SLOTS - 1``, names distinct and not empty): their events carry that name in
        :attr:`KernelEvent.host`; the events of `netns_inode`, the run's own namespace (the one
        that calls :func:`end_marker`), carry "". Every watched namespace must stay alive until
        :meth:`stop` or :meth:`cancel` (inode numbers are recycled). Raises ValueError, and
        changes nothing, for a bad mapping.
        """
        slots = [(netns_inode, ""), *(hosts or {}).items()]
        if len(slots) > SLOTS:
            raise ValueError(f"at most {SLOTS - 1} hosts besides the run's own namespace, not {len(slots) - 1}")
        if len({inode for inode, _ in slots}) < len(slots) or not all(0 < inode < 1 << 32 for inode, _ in slots):
            raise ValueError(f"watched namespace inodes must be distinct 32-bit numbers: {slots}")
        names = [name for _, name in slots[1:]]
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) < len(names):
            raise ValueError(f"host names must be distinct, non-empty strings: {names}")
        self._generation = (self._generation + 1) & 0xFFFFFFFF or 1
        self._ring.skip()
        self._offset = _realtime_offset()
        self._misses_before = self._misses()
        self._watching = netns_inode
        self._hosts = ["", *names]
        value = b"".join(struct.pack("<II", inode, self._generation) for inode, _ in slots)
        _bpf.map_update(self._watch_fd, b"\0" * 4, value.ljust(8 * SLOTS, b"\0"))

    def stop(self, timeout: float = 2.0) -> list[KernelEvent]:
        """Stop watching and return the watched namespaces' events up to the :func:`end_marker`, in order.

        Call it after the run's namespace's process called :func:`end_marker`, before that process
        exits (and before the hosts' namespaces die). The events of all watched namespaces are in
        one list, in the order the kernel wrote them, each with its :attr:`KernelEvent.host`.
        Raises TimeoutError when no marker arrives within `timeout` seconds.
        """
        _bpf.map_update(self._watch_fd, b"\0" * 4, b"\0" * (8 * SLOTS))
        if not self._watching:
            raise RuntimeError("Recorder.stop() without watch()")
        self._watching = 0
        events: list[KernelEvent] = []
        marker = False
        deadline = time.monotonic() + timeout
        while True:
            records, busy = self._ring.read()
            for raw in records:
                event = self._decode(raw)
                if event is not None:
                    events.append(event)
            marker = marker or self._cut_marker(events)
            if marker and not busy:
                self.missed = self._misses() - self._misses_before
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"no end marker from the watched namespace within {timeout} s: its process must "
                                   "call socklab._kernel.end_marker() after the scenario and before stop()")

    def _misses(self) -> int:
        """Hits of our tracepoints the kernel did not run our programs for, so far, in the whole machine.

        trace_call_bpf() runs no tracing program on a CPU where one is already
        running (an interrupt's softirq nested in a program, per-CPU
        ``bpf_prog_active``) and counts a miss on every program of the tracepoint.
        """
        return sum(struct.unpack_from("<Q", _bpf.prog_info(fd, self._misses_at + 8), self._misses_at)[0]
                   for fd in self._progs)

    def stats(self) -> tuple[int, int]:
        """(events that matched a watched namespace, any slot, of those the ring buffer refused), since attaching."""
        matched, refused = struct.unpack("<QQ", _bpf.map_lookup(self._stats_fd, b"\0" * 4, 16))
        return matched, refused

    def cancel(self) -> None:
        """Stop watching without reading (a run that failed); its records are dropped by the next watch()."""
        _bpf.map_update(self._watch_fd, b"\0" * 4, b"\0" * (8 * SLOTS))
        self._watching = 0

    def _decode(self, raw: bytes) -> KernelEvent | None:
        mono, kind, generation, sk_state, slot, ifindex = REC_HEAD.unpack_from(raw)
        decoder = self._decoders.get(kind)
        if generation != self._generation or decoder is None or slot >= len(self._hosts):
            return None
        return decoder.decode(mono + self._offset, sk_state, ifindex, raw, self._hosts[slot])

    @staticmethod
    def _cut_marker(events: list[KernelEvent]) -> bool:
        """Remove the end marker's two state changes (the run's own namespace's); whether its last one was there."""
        for i in range(len(events) - 1, -1, -1):
            e = events[i]
            if (isinstance(e, StateChange) and not e.host and e.sport == MARKER_PORT and
                    (e.old, e.new) == (State.LISTEN, State.CLOSE)):
                events[:] = [x for x in events if not (isinstance(x, StateChange) and x.sk == e.sk and
                                                       not x.host and x.sport == MARKER_PORT)]
                return True
        return False

    def close(self) -> None:
        """Detach everything (slow: 0.4-0.5 s; processes normally keep their recorder until exit)."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


_cached: Recorder | Unavailable | None = None


def _user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


FIX_ROOT = "run as root in the host's own user namespace (sudo), as the published build does"


def _why_not() -> Unavailable | None:
    if os.geteuid() != 0:
        return Unavailable("kernel events need root (bpf and tracefs)", FIX_ROOT)
    if _user_namespace():
        return Unavailable("this process runs inside a user namespace, where the kernel refuses bpf(2) and tracefs "
                           "even to its root", FIX_ROOT + ", not in a rootless container or `unshare --user`")
    if not os.path.exists(_bpf.BTF_PATH):
        return Unavailable(f"this kernel has no {_bpf.BTF_PATH} (built without CONFIG_DEBUG_INFO_BTF)",
                           "use a kernel with BTF (Debian, Ubuntu and Fedora kernels have it)")
    return None


def recorder() -> Recorder | Unavailable:
    """This process's recorder, attached on first use (~10 ms plus reading BTF), or why there is none."""
    global _cached
    if _cached is None:
        _cached = _why_not()
        if _cached is None:
            try:
                _cached = Recorder()
            except (OSError, KeyError, ValueError) as e:
                _cached = Unavailable(f"attaching the kernel's tracepoints failed: {e}",
                                      FIX_ROOT + "; on a locked-down kernel (lockdown=confidentiality) BPF is refused")
    return _cached
