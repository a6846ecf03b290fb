"""Run: what one scenario did, as tables, a trace, call results and checks.

Theory of operation
-------------------
A ``Run`` is built in the parent from the child's records (``_records``). It
never talks to the kernel: everything it shows was observed in the child.

Sockets and packet endpoints are named by role, so pages and claims can say
"the client" instead of an address: a socket in LISTEN is the *listener*; a
port that was listening, or that received a SYN, is a *server* port; a
connected socket on a server port is the *server*, one whose peer is on a
server port is the *client*. ``lab.name(sock, "...")`` overrides this (and is
the only naming for Unix sockets).
"""

from __future__ import annotations

import difflib
import functools
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import _trace
from ._netns import FIX_CAPTURE, Isolation
from ._records import Call, Calling, Frames, Named, Note, Snapshot, Started
from ._render import Group, Lines, Table
from ._states import SocketRow, kernel_state, ss_state
from ._version import __version__

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class ClaimError(AssertionError):
    """The kernel did not do what the page says."""


class Run:
    """The observed record of one scenario run."""

    def __init__(self, name: str, records: list[object]) -> None:
        self.name = name
        self.records = records
        started = next((r for r in records if isinstance(r, Started)), None)
        self.kernel = started.kernel if started else os.uname().release
        self.isolation = (Isolation(started.mode, started.capture, started.reason, started.fix)
                          if started else Isolation("none", False, "the scenario never started", ""))
        self.started_ns = started.time_ns if started else 0
        self.snapshots = [r for r in records if isinstance(r, Snapshot)]
        self.calls = [r for r in records if isinstance(r, Call)]
        self.notes = [r.text for r in records if isinstance(r, Note)]
        self.frames = [f for r in records if isinstance(r, Frames) for f in r.frames]
        self.killed_by: str | None = None
        self.summary: dict | None = None
        self._names = [r for r in records if isinstance(r, Named)]
        self._packets: list[_trace.Packet] | None = None

    # -- derived data ----------------------------------------------------------
    @property
    def packets(self) -> list[_trace.Packet]:
        """The scenario's TCP packets, in order (dissected on first use).

        In a private namespace every packet on ``lo`` is the scenario's. Without
        one, the capture saw the host's loopback too: keep only the packets
        between the scenario's own sockets.
        """
        if self._packets is None:
            packets = _trace.dissect(self.frames)
            if not self.isolation.private:
                own = self._own_ports()
                packets = [p for p in packets if p.sport in own and p.dport in own]
            self._packets = packets
        return self._packets

    def _own_ports(self) -> set[int | None]:
        ports = {port for s in self.snapshots for row in s.rows for port in (row.local_port, row.peer_port)}
        for c in self.calls:
            ports |= {int(a.rpartition(":")[2]) for a in (c.local, c.peer) if a}
        return ports

    def pcap(self) -> bytes:
        """The capture as a pcap file (open it with Wireshark or ``tcpdump -r``)."""
        return _trace.pcap_bytes([self.frames[p.frame] for p in self.packets])

    def save_pcap(self, path: str | os.PathLike) -> str:
        """Write the capture to `path` as a pcap file; return the path written, as a string."""
        with open(path, "wb") as f:
            f.write(self.pcap())
        return os.fspath(path)

    def last_step(self) -> str:
        """A description of the last thing the scenario recorded (for errors)."""
        for record in reversed(self.records):
            if isinstance(record, Calling):
                done = any(isinstance(r, Call) and r.label == record.label
                           for r in self.records[self.records.index(record):])
                return f"{record.label} ({'returned' if done else 'had not returned'})"
            if isinstance(record, Snapshot):
                return f"snapshot {record.label!r}"
        return "nothing recorded (it died before its first step)"

    @functools.cached_property
    def server_ports(self) -> set[int]:
        """Ports that listened, or received a SYN (computed once: the records never change)."""
        ports = {row.local_port for s in self.snapshots for row in s.rows if row.state == "LISTEN"}
        ports |= {p.dport for p in self.packets if p.flags == "S"} if self.frames else set()
        return {p for p in ports if p is not None}

    def role(self, row: SocketRow) -> str:
        """The name of a socket in tables and claims (see the module doc)."""
        for named in self._names:
            if (named.inode and named.inode == row.inode) or (
                    named.local and (named.local, named.peer) == (row.local, row.peer)):
                return named.name
        if row.netid != "tcp":
            return f"unix {row.inode}"
        if row.state == "LISTEN":
            return "listener"
        servers = self.server_ports
        if row.local_port in servers:
            return "server"
        if row.peer_port in servers:
            return "client"
        return "socket"

    def endpoint_role(self, address: str, port: int) -> str:
        """Role of a packet endpoint: "server" on a server port, else "client"."""
        for named in self._names:
            if named.local in (f"{address}:{port}", f"[{address}]:{port}"):
                return named.name
        return "server" if port in self.server_ports else "client"

    def _roles(self, rows: Sequence[SocketRow]) -> list[str]:
        names = [self.role(r) for r in rows]
        # Several of one role: tell them apart by the port that differs (a client's own,
        # a server's peer's).
        return [f"{n}:{r.peer_port if n == 'server' else r.local_port}"
                if names.count(n) > 1 and r.state != "LISTEN" else n
                for n, r in zip(names, rows, strict=True)]

    def snapshot(self, label: str) -> Snapshot:
        """The snapshot recorded under `label`; ``KeyError`` naming the known labels if none is."""
        for s in self.snapshots:
            if s.label == label:
                return s
        known = ", ".join(repr(s.label) for s in self.snapshots) or "none"
        raise KeyError(f"no snapshot labelled {label!r} in run {self.name!r}; snapshots: {known}")

    def states_at(self, label: str) -> dict[str, SocketRow]:
        """{role: row} of the snapshot `label`."""
        rows = self.snapshot(label).rows
        return dict(zip(self._roles(rows), rows, strict=True))

    def call(self, label: str) -> Call:
        """The call recorded under `label` (its ``outcome`` is the value or errno name); ``KeyError`` if none."""
        for c in self.calls:
            if c.label == label:
                return c
        known = ", ".join(repr(c.label) for c in self.calls) or "none"
        raise KeyError(f"no call labelled {label!r} in run {self.name!r}; calls: {known}")

    def flow(self) -> list[str]:
        """The packets as ``"client [S]"``: who sent which flags, in order."""
        return [f"{self.endpoint_role(p.src, p.sport)} [{p.flags}]" for p in self.packets]

    # -- views -----------------------------------------------------------------
    def states(self, *labels: str) -> Group:
        """The socket tables (all snapshots, or those named), ss-like."""
        chosen = [self.snapshot(label) for label in labels] if labels else self.snapshots
        if not chosen:
            return Group([Table(f"{self.name}: socket states", [], [], empty="(no snapshots recorded)")])
        tables = []
        for snap in chosen:
            i = self.snapshots.index(snap)
            earlier = list(self.snapshots[i - 1].rows) if i else []
            matched = _match(earlier, snap.rows)
            rows, classes = [], []
            roles = self._roles(snap.rows)
            for role, row in zip(roles, snap.rows, strict=True):
                prior = matched.get(id(row))
                rows.append([role, ss_state(row.state) if row.netid == "tcp" else _unix_state(row.state),
                             str(row.recv_q), str(row.send_q), row.local, row.peer, row.timer])
                changed = i and (prior is None or prior.state != row.state or prior.recv_q != row.recv_q)
                classes.append("changed" if changed else "")
            kept = {id(r) for r in matched.values()}
            gone = [r for r in earlier if id(r) not in kept]
            notes = [f"gone since {self.snapshots[i - 1].label!r}: {self.role(r)} "
                     f"{r.local} -> {r.peer} (was {ss_state(r.state) if r.netid == 'tcp' else r.state})"
                     for r in gone]
            columns = ["Socket", "State", "Recv-Q", "Send-Q", "Local Address:Port",
                       "Peer Address:Port", "Timer"]
            if not any(r[-1] for r in rows):
                columns, rows = columns[:-1], [r[:-1] for r in rows]
            tables.append(Table(snap.label, columns, rows, classes, notes,
                                empty="(no sockets: the table is empty)"))
        return Group(tables)

    def trace(self) -> Lines:
        """The packets, one tcpdump-style line each; RST and FIN lines emphasised."""
        if not self.isolation.capture:
            return Lines("packets", [], empty=f"(no capture: {self.isolation.reason}. {self.isolation.fix})")
        packets = self.packets
        t0 = packets[0].time_ns if packets else 0
        classes = ["rst" if "R" in p.flags else "fin" if "F" in p.flags else "" for p in packets]
        return Lines("packets (tcpdump -i lo, relative sequence numbers)", [p.line(t0) for p in packets],
                     classes, empty="(no packets were sent)")

    def results(self) -> Table:
        """The recorded calls and what each returned (a value or an errno name)."""
        rows, classes = [], []
        for c in self.calls:
            rows.append([c.label, self._call_side(c), c.outcome])
            classes.append("error" if c.errno else "")
        notes = []
        if self.killed_by:
            notes.append(f"the scenario's process was killed by {self.killed_by} during: {self.last_step()}")
        return Table("calls", ["call", "by", "result"], rows, classes, notes, empty="(no calls recorded)")

    def _call_side(self, call: Call) -> str:
        if not call.local:
            return ""
        if call.listening:
            return "listener"
        host, _, port = call.local.rpartition(":")
        return self.endpoint_role(host.strip("[]"), int(port))

    def ladder(self, *, emphasise: str | None = "R") -> Figure:
        """The run as a ladder diagram (a matplotlib figure); packets whose flags include
        every letter of `emphasise` (default: resets) drawn red and thick."""
        from ._ladder import ladder

        return ladder(self, emphasise=emphasise)

    def ladder_alt(self, *, emphasise: str | None = "R") -> str:
        """The ladder diagram in words (its alt text)."""
        from ._ladder import ladder_alt

        return ladder_alt(self, emphasise=emphasise)

    def about(self) -> Table:
        """Where this ran: kernel, isolation, capture, notes."""
        notes = list(self.notes)
        if self.isolation.reason:
            notes.insert(0, f"WARNING: {self.isolation.reason}. Fix: {self.isolation.fix}")
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started_ns / 1e9)) if self.started_ns else "?"
        where = self.isolation.describe().split(". Missing")[0]
        return Table(f"{self.name}: Linux {self.kernel}, {when}, socklab {__version__}; {where}",
                     [], [], notes=notes, empty="")

    def __str__(self) -> str:
        return "\n\n".join(str(part) for part in (self.about(), self.states(), self.results(), self.trace()))

    def _repr_html_(self) -> str:
        return Group([self.about(), self.states(), self.results(), self.trace()])._repr_html_()

    def summarize(self, *, closer: str, sends: Sequence[str] = (), recv: str | None = None) -> Run:
        """Say which recorded calls are which, for the site's "what happens when" matrix.

        `closer` is the label of the call that ends the connection; `sends` the
        labels of the other side's first and second send; `recv` its receive.
        Only labels are given here: every value in the matrix is read from the run.
        """
        for label in (closer, *sends, *([recv] if recv else [])):
            self.call(label)  # fail now, with the known labels, on a typo
        self.summary = {"closer": closer, "sends": list(sends), "recv": recv}
        return self

    # -- claims ----------------------------------------------------------------
    def expect(self, *, calls: Mapping[str, object] | None = None, flow: Sequence[str] | None = None,
               states: Mapping[str, Mapping[str, object]] | None = None,
               packets: Mapping[int, Mapping[str, object]] | None = None,
               killed_by: str | None = None) -> Run:
        """Check what the page claims against what the kernel did.

        * ``calls={"send #1": 1, "send #2": "EPIPE"}``: outcome of each labelled call;
        * ``flow=["client [S]", "server [S.]", ...]``: every packet, in order;
        * ``states={"after close": {"client": "FIN_WAIT2", "server": ("CLOSE_WAIT", 1)}}``:
          each role's state (and Recv-Q) at a snapshot; ``None`` means not in the table;
          a dict checks more columns: ``{"state": "FIN_WAIT2", "send_q": 5, "timer": "timewait"}``
          (the timer by its kind, the text before the first comma);
        * ``packets={6: {"flags": "R.", "seq": 1, "ack": 1, "ip": "IP6"}}``: fields of the
          packet at that index in the trace (any attribute of a trace packet);
        * ``killed_by="SIGPIPE"``.

        Raises ``ClaimError`` naming every claim that broke; returns the run.
        """
        broken = []
        for label, want in (calls or {}).items():
            got = self.call(label).outcome
            if got != str(want):
                broken.append(f"call {label!r}: the page says {want}, the kernel returned {got}")
        if (flow is not None or packets) and not self.isolation.capture:
            broken.append(f"the page's packet claims cannot be checked: no capture "
                          f"({self.isolation.reason}). Fix: {self.isolation.fix or FIX_CAPTURE}")
            flow, packets = None, None
        if flow is not None:
            got_flow = self.flow()
            if list(flow) != got_flow:
                diff = "\n".join(difflib.unified_diff(list(flow), got_flow, "page says", "kernel did", lineterm=""))
                broken.append(f"packet flow differs:\n{diff}")
        for label, roles in (states or {}).items():
            table = self.states_at(label)
            for role, want in roles.items():
                broken += self._check_state(label, role, want, table.get(role))
        for index, fields in (packets or {}).items():
            if index >= len(self.packets):
                broken.append(f"packet {index}: the page describes it, the trace has {len(self.packets)} packets")
                continue
            packet = self.packets[index]
            for field, want in fields.items():
                got = getattr(packet, field)
                if got != want:
                    broken.append(f"packet {index} ({packet.flags}) {field}: the page says {want!r}, "
                                  f"the trace has {got!r}")
        if killed_by is not None and self.killed_by != killed_by:
            broken.append(f"the page says the process is killed by {killed_by}; it was "
                          f"{'killed by ' + self.killed_by if self.killed_by else 'not killed'}")
        if broken:
            raise ClaimError(f"{len(broken)} claim(s) of scenario {self.name!r} broke on Linux "
                             f"{self.kernel}:\n- " + "\n- ".join(broken))
        return self

    @staticmethod
    def _check_state(label: str, role: str, want: object, row: SocketRow | None) -> list[str]:
        where = f"state of {role} at {label!r}"
        if want is None:
            return [] if row is None else [f"{where}: the page says gone, the kernel shows {row.state}"]
        if isinstance(want, str):
            fields: dict = {"state": want}
        elif isinstance(want, Mapping):
            fields = dict(want)
        else:
            pair: tuple = tuple(want)  # type: ignore[arg-type]
            fields = {"state": pair[0], "recv_q": pair[1]}
        if row is None:
            return [f"{where}: the page says {fields.get('state', 'present')}, the socket is not in the table"]
        problems = []
        for field, expected in fields.items():
            if field == "state":
                expected, got = kernel_state(str(expected)), row.state
            elif field == "timer":
                got = row.timer.partition(",")[0]
            else:
                got = getattr(row, field)
            if expected != got:
                problems.append(f"{where}: the page says {field} {expected}, the kernel shows {got}")
        return problems


def _match(earlier: Sequence[SocketRow], now: Sequence[SocketRow]) -> dict[int, SocketRow]:
    """{id(row now): the same socket's row earlier}. By inode first (a Unix socket's
    peer column changes when its peer closes), then by addresses (a TCP socket
    closed by its program lives on as an orphan with inode 0)."""
    by_inode = {r.inode: r for r in earlier if r.inode}
    by_address = {(r.local, r.peer): r for r in earlier if r.netid == "tcp"}
    matched: dict[int, SocketRow] = {}
    taken: set[int] = set()
    for row in now:
        prior = by_inode.get(row.inode) if row.inode else None
        if prior is None and row.netid == "tcp":
            prior = by_address.get((row.local, row.peer))
        if prior is not None and id(prior) not in taken:
            matched[id(row)] = prior
            taken.add(id(prior))
    return matched


def _unix_state(state: str) -> str:
    return {"ESTABLISHED": "ESTAB", "CLOSE": "UNCONN"}.get(state, state)
