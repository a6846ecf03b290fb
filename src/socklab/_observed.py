"""What one run observed: the records from the child, sorted into plain data.

Theory of operation
-------------------
``Observed`` is built in the parent from the child's records (``_records``)
and never changes afterwards; it never talks to the kernel. Everything a page
shows is derived from it by the modules that each do one job: ``_roles``
names sockets, ``_views`` renders tables and traces, ``_claims`` checks a
page's claims, ``_ladder`` draws. ``Run`` (in ``_run``) is this data with
those jobs as methods, which is what a scenario page holds.

The only derived data kept here is what every job needs: the packets,
dissected once (``_trace``), and, where the run had no private namespace, only
the packets between the scenario's own sockets.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from . import _trace
from ._netns import Isolation
from ._records import (
    Call,
    Calling,
    Counters,
    Exited,
    Frames,
    KernelEvents,
    LinkFrames,
    Named,
    Note,
    Ports,
    Snapshot,
    Started,
    Value,
)
from ._vocab import State


class Observed:
    """The records of one scenario run, as data."""

    def __init__(self, name: str, records: list[object]) -> None:
        self.name = name
        self.records = records
        started = next((r for r in records if isinstance(r, Started)), None)
        #: The kernel release the scenario ran on (``uname -r``).
        self.kernel = started.kernel if started else os.uname().release
        #: How the run was isolated, and what it could observe.
        self.isolation = (Isolation(started.mode, started.capture, started.reason, started.fix)
                          if started else Isolation("none", False, "the scenario never started", ""))
        self.started_ns = started.time_ns if started else 0
        self.snapshots: list[Snapshot] = [r for r in records if isinstance(r, Snapshot)]
        self.calls: list[Call] = [r for r in records if isinstance(r, Call)]
        self.values: dict[str, Any] = {r.name: r.value for r in records if isinstance(r, Value)}
        self.notes: list[str] = [r.text for r in records if isinstance(r, Note)]
        self.frames: list[tuple[int, bytes]] = [f for r in records if isinstance(r, Frames) for f in r.frames]
        link = next((r for r in records if isinstance(r, LinkFrames)), None)
        #: A two-hosts run's link frames (``_wire.LinkFrame``: sender, fate, times), in the order
        #: they entered the link; empty on loopback. They are the run's capture then.
        self.link_frames: list[Any] = list(link.frames) if link else []
        #: What a two-hosts run's topology set (delay, addresses, sysctls per host); None on loopback.
        self.wire: dict[str, Any] | None = link.settings if link else None
        if link:
            self.frames = [(f.sent_ns, f.data) for f in self.link_frames]
        self.names: list[Named] = [r for r in records if isinstance(r, Named)]
        kernel = next((r for r in records if isinstance(r, KernelEvents)), None)
        #: The kernel's own events of the run's namespace (``_kevents`` records), in order.
        self.kernel_events: list[Any] = sorted(kernel.events, key=lambda e: e.time_ns) if kernel else []
        #: Why there are no kernel events ("" when they were recorded), and what to do.
        self.events_unavailable: str = kernel.unavailable if kernel else "the run recorded no kernel events"
        self.events_fix: str = kernel.fix if kernel else ""
        #: Parts of the kernel's account this kernel cannot give: {what: why}.
        self.events_missing: dict[str, str] = dict(kernel.missing) if kernel else {}
        counters = next((r for r in records if isinstance(r, Counters)), None)
        #: The namespace's TCP counters that changed during the scenario, by their ``nstat`` names.
        self.counters: dict[str, int] | None = dict(counters.changed) if counters else None
        ports = next((r for r in records if isinstance(r, Ports)), None)
        #: The page's port -> the port this run used instead (only where the host's ports were shared).
        self.port_map: dict[int, int] = dict(ports.mapped) if ports else {}
        #: Ports the scenario bound by number (its servers'), as used.
        self.bound_ports: set[int] = set(ports.bound) if ports else set()
        exited = next((r for r in records if isinstance(r, Exited)), None)
        #: The signal that killed the scenario's process ("SIGPIPE"), or None.
        self.killed_by: str | None = exited.signal if exited else None
        #: What ``Run.summarize`` declared (labels only), for the site's matrix.
        self.summary: dict | None = None

    @functools.cached_property
    def packets(self) -> list[_trace.Packet]:
        """The scenario's TCP packets, in order (dissected on first use).

        In a private namespace every packet on ``lo`` is the scenario's. Without
        one, only the packets between the scenario's own sockets are kept.
        """
        packets = _trace.dissect(self.frames)
        if self.link_frames:  # each segment's fate on the link
            packets = [dataclasses.replace(p, arrived_ns=f.arrived_ns, fate=f.fate, rule=f.rule or "")
                       for p in packets for f in (self.link_frames[p.frame],)]
        elif not self.isolation.private:
            own = self._own_ports()
            packets = [p for p in packets if p.sport in own and p.dport in own]
        return packets

    @functools.cached_property
    def server_ports(self) -> set[int]:
        """Ports that listened (in a snapshot, or a call on the listening socket), or received a SYN
        (one a host sent: a SYN the scenario forged into a connection names nobody a server)."""
        ports = {row.local_port for s in self.snapshots for row in s.rows if row.state is State.LISTEN}
        ports |= {c.socket.local.port for c in self.calls if c.socket.listening and c.socket.local is not None}
        ports |= {p.dport for p in self.packets if p.flags == "S" and p.fate != "injected"}
        ports |= self.bound_ports
        return {p for p in ports if p is not None}

    def _own_ports(self) -> set[int | None]:
        ports = {port for s in self.snapshots for row in s.rows for port in (row.local_port, row.peer_port)}
        for c in self.calls:
            ports |= {end.port for end in (c.socket.local, c.socket.peer) if end is not None}
        return ports

    def pcap(self) -> bytes:
        """The capture as a pcap file (open it with Wireshark or ``tcpdump -r``)."""
        return _trace.pcap_bytes([self.frames[p.frame] for p in self.packets])

    def save_pcap(self, path: str | os.PathLike) -> str:
        """Write the capture (``pcap``) to `path`; return the path."""
        with open(path, "wb") as f:
            f.write(self.pcap())
        return os.fspath(path)

    def snapshot(self, label: str) -> Snapshot:
        """The snapshot recorded under `label`; KeyError naming the labels otherwise."""
        for s in self.snapshots:
            if s.label == label:
                return s
        known = ", ".join(repr(s.label) for s in self.snapshots) or "none"
        raise KeyError(f"no snapshot labelled {label!r} in run {self.name!r}; snapshots: {known}")

    def value(self, name: str) -> Any:
        """A value the scenario recorded with ``lab.record(name, value)``."""
        if name not in self.values:
            known = ", ".join(repr(n) for n in self.values) or "none"
            raise KeyError(f"no value named {name!r} in run {self.name!r}; values: {known}")
        return self.values[name]

    def last_step(self) -> str:
        """A description of the last thing the scenario recorded (for errors)."""
        for i in range(len(self.records) - 1, -1, -1):
            record = self.records[i]
            if isinstance(record, Calling):
                done = any(isinstance(r, Call) and r.label == record.label for r in self.records[i:])
                return f"{record.label} ({'returned' if done else 'had not returned'})"
            if isinstance(record, Snapshot):
                return f"snapshot {record.label!r}"
            if isinstance(record, Value):
                return f"recorded value {record.name!r}"
            if isinstance(record, Note):
                return f"note {record.text[:60]!r}"
        if any(isinstance(r, Started) for r in self.records):
            return "none (it had started, but recorded no step)"
        return "none (it had not started: no record came from its process)"
