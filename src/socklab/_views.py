"""The views of a run: socket tables, the packet trace, call results, provenance.

Theory of operation
-------------------
Each view is a ``_render`` model (``Table``, ``Lines``, ``Group``) built from
the run's data, so the terminal and the page show the same cells. States are
spelled as ``ss`` prints them, in the tables and in the notes under them (the
vocabulary rule of ``_vocab``); sockets and callers are named by ``_roles``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from . import _events, _roles
from ._observed import Observed
from ._render import Group, Lines, Table
from ._states import SocketRow
from ._trace import Packet
from ._version import __version__
from ._vocab import short_repr

_COLUMNS = ["Socket", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Timer"]


def states(run: Observed, *labels: str) -> Group:
    """The socket tables (all snapshots, or those named), ss-like."""
    chosen = [run.snapshot(label) for label in labels] if labels else run.snapshots
    if not chosen:
        return Group([Table(f"{run.name}: socket states", [], [], empty="(no snapshots recorded)")])
    tables = []
    for snap in chosen:
        i = run.snapshots.index(snap)
        earlier = list(run.snapshots[i - 1].rows) if i else []
        matched = match_rows(earlier, snap.rows)
        rows, classes = [], []
        hosts = any(row.host for row in snap.rows)
        for name, row in zip(_roles.roles(run, snap.rows), snap.rows, strict=True):
            prior = matched.get(id(row))
            rows.append([name, *([row.host] if hosts else []), row.state.ss, str(row.recv_q), str(row.send_q),
                         str(row.local), str(row.peer), row.timer])
            changed = i and (prior is None or prior.state != row.state or prior.recv_q != row.recv_q)
            classes.append("changed" if changed else "")
        kept = {id(r) for r in matched.values()}
        notes = [f"gone since {run.snapshots[i - 1].label!r}: {_roles.role(run, r)} {r.local} -> {r.peer} "
                 f"(was {r.state.ss})" for r in earlier if id(r) not in kept]
        columns = [_COLUMNS[0], "Host", *_COLUMNS[1:]] if hosts else _COLUMNS
        if not any(r[-1] for r in rows):
            columns, rows = columns[:-1], [r[:-1] for r in rows]
        tables.append(Table(snap.label, columns, rows, classes, notes, empty="(no sockets: the table is empty)"))
    return Group(tables)


def trace(run: Observed) -> Lines:
    """The packets, one tcpdump-style line each; RST and FIN lines emphasised."""
    if not run.isolation.capture:
        return Lines("packets", [], empty=f"(no capture: {run.isolation.reason}. {run.isolation.fix})")
    packets = run.packets
    t0 = packets[0].time_ns if packets else 0
    classes = ["rst" if "R" in p.flags else "fin" if "F" in p.flags else "" for p in packets]
    if run.wire is None:
        return Lines("packets (tcpdump -i lo, relative sequence numbers)", [p.line(t0) for p in packets],
                     classes, empty="(no packets were sent)")
    return Lines("packets on the link, as each entered it (relative sequence numbers)",
                 [p.line(t0) + _fate(p) for p in packets], classes, empty="(no packets were sent)")


def _fate(packet: Packet) -> str:
    """What the link did to a packet, where it did not simply deliver it."""
    if packet.fate in ("", "delivered"):
        return ""
    why = {"dropped": "DROPPED by the link", "cut": "LOST: the link was cut", "lost": "LOST: still on the link "
           "when the run ended", "injected": "FORGED: put on the link by the scenario"}.get(packet.fate, packet.fate)
    return f"  <- {why}" + (f" (rule {packet.rule!r})" if packet.rule and packet.fate == "dropped" else "")


def results(run: Observed) -> Table:
    """The recorded calls and what each returned (a value or an errno name), and recorded values."""
    rows, classes = [], []
    for c in run.calls:
        rows.append([_roles.actor(run, c) or "", c.label, c.outcome])
        classes.append("error" if c.failed else "")
    for name, value in run.values.items():
        rows.append(["", name, short_repr(value)])
        classes.append("")
    notes = []
    if run.killed_by:
        notes.append(f"the scenario's process was killed by {run.killed_by} during: {run.last_step()}")
    return Table("calls", ["by", "call", "result"], rows, classes, notes, empty="(no calls recorded)")


def _start(run: Observed) -> int:
    """Time zero of a run's tables: its first packet, else its first event or call."""
    if run.packets:
        return run.packets[0].time_ns
    return min([e.time_ns for e in run.kernel_events[:1]] + [c.time_ns for c in run.calls[:1]], default=0)


def _ms(t0: int, time_ns: int) -> str:
    return f"{(time_ns - t0) / 1e6:+.3f} ms"


def events(run: Observed) -> Table:
    """The kernel's own events of the run (as root): state changes, resets and why, retransmissions,
    drops. The kernel's names are quoted as it prints them (``TCP_FIN_WAIT1``)."""
    if not run.kernel_events:
        why = run.events_unavailable or "the kernel recorded no TCP event"
        fix = f". Fix: {run.events_fix}" if run.events_fix else ""
        return Table("kernel events", [], [], empty=f"(none: {why}{fix})", spelling="kernel")
    rows, classes = [], []
    t0 = _start(run)
    hosts = any(getattr(e, "host", "") for e in run.kernel_events)
    for e in run.kernel_events:
        rows.append([_ms(t0, e.time_ns), *([e.host or "–"] if hosts else []), _events.whose(run, e) or "–",
                     _events.describe(run, e)])
        classes.append("rst" if type(e).__name__ == "ResetSent" else "")
    notes = [f"not recorded on this kernel: {what} ({why})" for what, why in run.events_missing.items()]
    notes += [f"WARNING: an event of the {role}'s socket was lost in this run: {evidence}"
              for role, found in _events.lost(run).items() for evidence in found]
    if run.counters:
        notes.append("counters that changed: " + ", ".join(f"{k} +{v}" for k, v in sorted(run.counters.items())))
    where = "this run's two hosts" if hosts else "this run's network namespace"
    columns = ["time", *(["host"] if hosts else []), "socket", "event"]
    return Table(f"kernel events (tracepoints of {where})", columns, rows, classes, notes, spelling="kernel")


def timeline(run: Observed) -> Table:
    """Calls, packets and kernel events in one list, in time order."""
    entries: list[tuple[int, int, list[str], str]] = []
    for c in run.calls:
        entries.append((c.time_ns, 0, [_roles.actor(run, c) or "", f"{c.label} = {c.outcome}"],
                        "error" if c.failed else ""))
    for p in run.packets:
        entries.append((p.time_ns, 1, [_roles.endpoint_role(run, p.source), f"sends {p.text()}"],
                        "rst" if "R" in p.flags else "fin" if "F" in p.flags else ""))
    for e in run.kernel_events:
        entries.append((e.time_ns, 2, [_events.whose(run, e) or "–", f"kernel: {_events.describe(run, e)}"],
                        "rst" if type(e).__name__ == "ResetSent" else ""))
    entries.sort(key=lambda x: (x[0], x[1]))
    t0 = _start(run)
    rows = [[_ms(t0, t), *cells] for t, _, cells, _ in entries]
    notes = [] if run.kernel_events else [f"no kernel events: {run.events_unavailable}"]
    return Table("timeline: calls, packets and the kernel's events", ["time", "who", "what"], rows,
                 [cls for *_, cls in entries], notes, spelling="kernel")


def about(run: Observed, unchecked: Sequence[str] = ()) -> Table:
    """Where this ran: kernel, isolation, capture, notes; and claims that could not be checked."""
    notes = list(run.notes)
    if run.wire is not None:
        notes.insert(0, wire_text(run.wire))
    if run.isolation.reason:
        notes.insert(0, f"WARNING: {run.isolation.reason}. Fix: {run.isolation.fix}")
    if run.events_unavailable and run.events_unavailable != "the run recorded no kernel events":
        notes.append(f"no kernel events: {run.events_unavailable}. Fix: {run.events_fix}")
    notes += [f"UNCHECKED claim: {claim}" for claim in unchecked]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.started_ns / 1e9)) if run.started_ns else "?"
    where = run.isolation.describe().split(". Missing")[0]
    return Table(f"{run.name}: Linux {run.kernel}, {when}, socklab {__version__}; {where}",
                 [], [], notes=notes, empty="")


def wire_text(wire: dict) -> str:
    """A two-hosts run's topology in one line: hosts, delay, the sysctls it set."""
    hosts = wire["hosts"]
    delay = wire["delay"]
    parts = [f"two hosts joined by a link: client {hosts['client']['ipv4']}, server {hosts['server']['ipv4']}; "
             f"one-way delay {delay * 1000:g} ms (round trip {2 * delay * 1000:g} ms)"]
    for name, host in hosts.items():
        if host["sysctls"]:
            parts.append(f"{name}: " + ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in host["sysctls"].items()))
    if not wire.get("realtime relay", True):
        parts.append("the relay ran without real-time priority, so its delays are only as exact as the scheduler")
    return "; ".join(parts)


def match_rows(earlier: Sequence[SocketRow], now: Sequence[SocketRow]) -> dict[int, SocketRow]:
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
