"""Summaries of runs for the site-wide pages: the "what happens when" matrix
and the errno table.

Theory of operation
-------------------
A scenario page says which of its recorded calls play which part
(``run.summarize(closer=..., sends=[...], recv=...)``); every value in the
row is then read from the run: the outcome of each call, what the closing side
put on the wire after its call, whether a signal killed the process, the
sockets left in the last snapshot. Nothing in a row is typed by hand, so when
the kernel changes its mind the matrix changes with it.

The errno table needs no declaration at all: it lists every recorded call that
failed, with the state its socket was in at the last snapshot before the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._states import ss_state

if TYPE_CHECKING:
    from ._records import Call
    from ._run import Run

MATRIX_COLUMNS = ["closing side called", "then on the wire", "peer's 1st send()", "peer's 2nd send()",
                  "peer's recv()", "SIGPIPE", "sockets left at the end"]


def wire_after(run: Run, call: Call) -> str:
    """What the caller's side sent after `call` returned: FIN, RST, both, or nothing."""
    if not run.isolation.capture:
        return "(not captured)"
    if not call.local:
        return "no wire (not a TCP socket)"
    port = int(call.local.rpartition(":")[2])
    sent = [p.flags for p in run.packets if p.sport == port and p.time_ns >= _start_of(run, call)]
    kinds = []
    for flags in sent:
        kind = "RST" if "R" in flags else "FIN" if "F" in flags else None
        if kind and kind not in kinds:
            kinds.append(kind)
    return ", then ".join(kinds) if kinds else "nothing"


def _start_of(run: Run, call: Call) -> int:
    """When `call` started: the time of the record before it (calls are stamped on return)."""
    index = run.calls.index(call)
    earlier = [c.time_ns for c in run.calls[:index]] + [s.time_ns for s in run.snapshots if s.time_ns < call.time_ns]
    return max(earlier, default=0)


def _outcome(run: Run, label: str | None) -> str:
    return run.call(label).outcome if label else "–"


def matrix_row(run: Run) -> list[str]:
    """The matrix row of a run that called ``summarize``."""
    parts = run.summary
    if parts is None:
        raise ValueError(f"run {run.name!r} has no summary: call run.summarize(closer=..., sends=[...])")
    closer = run.call(parts["closer"])
    sends = list(parts.get("sends", [])) + [None, None]
    if run.killed_by:
        sigpipe = f"killed by {run.killed_by}"
    elif any(c.errno == "EPIPE" for c in run.calls):
        sigpipe = "with EPIPE, unless MSG_NOSIGNAL or ignored"
    else:
        sigpipe = "no (no EPIPE)"
    last = run.snapshots[-1] if run.snapshots else None
    left = "–"
    if last is not None:
        rows = sorted((r for r in last.rows if r.state != "LISTEN"), key=lambda r: (run.role(r), r.local))
        left = ", ".join(f"{run.role(r)} {ss_state(r.state) if r.netid == 'tcp' else r.state}"
                         for r in rows) or "none"
    return [closer.label, wire_after(run, closer), _outcome(run, sends[0]), _outcome(run, sends[1]),
            _outcome(run, parts.get("recv")), sigpipe, left]


def errno_rows(run: Run) -> list[list[str]]:
    """[call, by, state of its socket just before, errno] for every failed call."""
    rows = []
    for call in run.calls:
        if not call.errno:
            continue
        before = [s for s in run.snapshots if s.time_ns < call.time_ns]
        state = "–"
        if before and call.inode:
            row = next((r for r in before[-1].rows if r.inode == call.inode), None)
            if row is None:
                state = "not in the table (reset)"
            else:
                state = ss_state(row.state) if row.netid == "tcp" else row.state
        rows.append([call.label, run._call_side(call) or "–", state, call.errno])
    return rows
