"""Summaries of runs for the site-wide pages: the "what happens when" matrix
and the errno table. Only socklab's public API is used here.

Theory of operation
-------------------
A scenario page says which of its recorded calls play which part
(``run.summarize(closer=..., sends=[...], recv=...)``); every value in the
row is then read from the run: the outcome of each call, what the closing side
put on the wire after its call, whether a signal killed the process, the
sockets in the table. Nothing in a row is typed by hand, so when the kernel
changes its mind the matrix changes with it.

A row describes those calls and nothing after them: what a scenario does to
clean up at its end (closing both sides) must not be read as an effect of the
call the row is about. So the row ends when the run does something else: at
the first other call after the row's last call, or at the first snapshot after
that call, whichever comes first. The wire is read up to that moment; the
sockets are that snapshot's if it came before any other call, else "–" (not
snapshotted before the scenario went on). When nothing follows the row's last
call, the row ends with the run and the sockets are the last snapshot's. The
SIGPIPE column is about the row's calls too.

The errno table needs no declaration at all: it lists every recorded call that
failed, with the state its socket was in at the last snapshot before the call.
A socket missing from that snapshot is "not in the table"; "(reset)" is added
only when the capture shows an RST to or from that socket before the call.

States are spelled as ``ss`` prints them: these are tables (see
``socklab.State``).
"""

from __future__ import annotations

from socklab import Call, Run, Snapshot, State

#: The send columns are loopback's: there a reset is back before the peer's next call (docs/matrix.md).
MATRIX_COLUMNS = ["closing side called", "then on the wire", "peer's 1st send() (loopback)",
                  "peer's 2nd send() (loopback)",
                  "peer's recv()", "SIGPIPE", "sockets after these calls"]


def row_calls(run: Run) -> list[Call]:
    """The calls a row is about: the closer, the sends, the receive."""
    parts = run.summary or {}
    return [run.call(key) for key in (parts.get("closer"), *parts.get("sends", []), parts.get("recv")) if key]


def end_of_row(run: Run) -> tuple[Snapshot | None, int | None]:
    """(the snapshot whose sockets the row lists or None, the time the row's wire ends or None
    for the end of the run): see the module doc."""
    mine = row_calls(run)
    last = max(c.time_ns for c in mine)
    snapshot = next((s for s in run.snapshots if s.time_ns >= last), None)
    other = next((c for c in run.calls if c.start_ns >= last and all(c is not m for m in mine)), None)
    if other is not None and (snapshot is None or other.start_ns < snapshot.time_ns):
        return None, other.start_ns
    if snapshot is not None:
        return snapshot, snapshot.time_ns
    return (run.snapshots[-1] if run.snapshots else None), None


def wire_after(run: Run, call: Call, until_ns: int | None = None) -> str:
    """What the caller's side sent once `call` started (and before `until_ns`): FIN, RST, both, or nothing."""
    if not run.isolation.capture:
        return "(not captured)"
    if call.socket.local is None:
        return "no wire (not a TCP socket)"
    end = until_ns if until_ns is not None else float("inf")
    sent = [p.flags for p in run.packets
            if p.source == call.socket.local and call.start_ns <= p.time_ns <= end]
    kinds = []
    for flags in sent:
        kind = "RST" if "R" in flags else "FIN" if "F" in flags else None
        if kind and kind not in kinds:
            kinds.append(kind)
    return ", then ".join(kinds) if kinds else "nothing"


def _outcome(run: Run, key: str | None) -> str:
    return run.call(key).outcome if key else "–"


def matrix_row(run: Run) -> list[str]:
    """The matrix row of a run that called ``summarize``."""
    parts = run.summary
    if parts is None:
        raise ValueError(f"run {run.name!r} has no summary: call run.summarize(closer=..., sends=[...])")
    closer = run.call(parts["closer"])
    sends = list(parts.get("sends", [])) + [None, None]
    if run.killed_by:
        sigpipe = f"killed by {run.killed_by}"
    elif any(c.errno == "EPIPE" for c in row_calls(run)):
        sigpipe = "with EPIPE, unless MSG_NOSIGNAL or ignored"
    else:
        sigpipe = "no (no EPIPE)"
    end, until = end_of_row(run)
    left = "–"
    if end is not None:
        rows = sorted((r for r in end.rows if r.state is not State.LISTEN),
                      key=lambda r: (run.role(r), r.local.sort_key()))
        left = ", ".join(f"{run.role(r)} {r.state.ss}" for r in rows) or "none"
    who = run.actor(closer)
    return [f"{who}: {closer.label}" if who else closer.label, wire_after(run, closer, until), _outcome(run, sends[0]),
            _outcome(run, sends[1]), _outcome(run, parts.get("recv")), sigpipe, left]


def reset_before(run: Run, call: Call) -> bool:
    """Whether the capture shows an RST on the call's connection before the call (its
    addresses as the call saw them, or as an earlier snapshot listed its socket)."""
    ends = {call.socket.local, call.socket.peer}
    earlier = [r for s in run.snapshots if s.time_ns < call.start_ns for r in s.rows
               if call.socket.inode and r.inode == call.socket.inode]
    if None in ends and earlier:
        ends = {earlier[-1].local, earlier[-1].peer}
    return None not in ends and any(
        "R" in p.flags and {p.source, p.destination} == ends and p.time_ns < call.start_ns
        for p in run.packets)


def errno_rows(run: Run) -> list[list[str]]:
    """[call, by, state of its socket just before, errno] for every failed call."""
    rows = []
    for call in run.calls:
        if not call.errno:
            continue
        before = [s for s in run.snapshots if s.time_ns < call.start_ns]
        state = "–"
        if before and call.socket.inode:
            row = next((r for r in before[-1].rows if r.inode == call.socket.inode), None)
            state = row.state.ss if row is not None else (
                "not in the table (reset)" if reset_before(run, call) else "not in the table")
        rows.append([call.label, run.actor(call) or "–", state, call.errno])
    return rows
