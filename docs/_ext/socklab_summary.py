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

import errno as errno_module
import os
import re

from socklab import Call, Endpoint, Run, Snapshot, State

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


# -- the error-message index -----------------------------------------------------------------
#
# Every recorded call that failed is indexed by the message a program is shown: the
# strerror of its errno ("Connection reset by peer", the text after "[Errno 104] " in a
# traceback), or the message of an exception that carries no errno ("Remote end closed
# connection without response"). Beside each, what was on the wire before the call failed:
# the FINs and RSTs of the caller's connection since it began (its last SYN), either way,
# each RST with the reason its sender's kernel recorded and, for one it received, the state
# the caller's kernel took it in; for a connect that got neither, the SYNs no SYN-ACK
# answered; for a call on no TCP connection, that no packet was involved. That column is
# what tells two runs with the same message apart. All of it is read from the run; nothing
# about which page produces which message is written anywhere.

#: The messages the index must list (issue 15). A build in which one of them was produced
#: by no run fails: the index never lists a message it cannot show a run for.
LISTED_MESSAGES = [
    "Connection reset by peer",
    "Broken pipe",
    "Connection refused",
    "Connection timed out",
    "Address already in use",
    "Cannot assign requested address",
    "Remote end closed connection without response",
]

ERROR_COLUMNS = ["call", "raised", "socket before the call", "on the wire before the call",
                 "earlier error on that socket"]

_ERRNO_PREFIX = re.compile(r"^\[Errno \d+\] ")


def message_of(call: Call) -> str:
    """The message a program is shown for a failed call, without the ``[Errno N]`` prefix."""
    if call.message is not None:
        return _ERRNO_PREFIX.sub("", call.message)
    number = getattr(errno_module, call.errno or "", None)
    return os.strerror(number) if isinstance(number, int) else str(call.errno)


def raised_as(call: Call) -> str:
    """``ConnectionResetError (ECONNRESET)``, ``http.client.RemoteDisconnected``, or the errno name alone
    for a call recorded without its exception."""
    if call.exception and call.errno:
        return f"{call.exception} ({call.errno})"
    return call.exception or call.errno or "–"


def _is_tcp(end: Endpoint | None) -> bool:
    """An address of a TCP connection's own (not an unbound socket's 0.0.0.0:0)."""
    return end is not None and end.inet and bool(end.port)


def _state_before(run: Run, call: Call) -> str:
    before = [s for s in run.snapshots if s.time_ns < call.start_ns]
    if not before or not call.socket.inode:
        return "–"
    row = next((r for r in before[-1].rows if r.inode == call.socket.inode), None)
    if row is not None:
        return row.state.ss
    seen = any(r.inode == call.socket.inode for s in before for r in s.rows)
    return "gone from the table" if seen else "–"


def _sent_reset(run: Run, packet) -> str:
    """The reason the sender's kernel recorded for the RST `packet`, from its ``tcp_send_reset`` event."""
    if not run.kernel_events:
        return f"reason not recorded: {run.events_unavailable}"
    if "reset reasons" in run.events_missing:
        return "this kernel records no reason"
    sent = [e for e in run.kernel_events if type(e).__name__ == "ResetSent"  # tcp:tcp_send_reset
            and (e.saddr, e.sport, e.daddr, e.dport) == (packet.source.address, packet.source.port,
                                                         packet.destination.address, packet.destination.port)]
    if not sent:
        return "no tcp_send_reset event matched it"
    event = min(sent, key=lambda e: abs(e.time_ns - packet.time_ns))
    return event.reason or "reason not recorded"


def _taken_in(run: Run, packet, local: Endpoint) -> str:
    """The state the caller's kernel took the RST in (its ``tcp_receive_reset`` event), "" when unknown."""
    taken = [e for e in run.kernel_events if type(e).__name__ == "ResetReceived"  # tcp:tcp_receive_reset
             and (e.saddr, e.sport) == (local.address, local.port) and e.time_ns >= packet.time_ns - 1_000_000]
    if not taken or taken[0].state is None:
        return ""
    return f", taken in {taken[0].state.ss}"


def on_the_wire(run: Run, call: Call) -> str:
    """The FINs and RSTs of the caller's connection before `call` failed, or why there are none
    (see the comment above ``LISTED_MESSAGES``)."""
    local = call.socket.local
    if local is None or not local.inet:
        return "not a TCP socket: no packet"
    if not run.isolation.capture:
        return "(not captured)"
    if not local.port:  # a connect() on an unbound socket: the socket is the one that sent SYNs during it
        syns = {p.source for p in run.packets if p.flags == "S" and call.start_ns <= p.time_ns <= call.time_ns}
        if len(syns) > 1:
            return "(several connections began during the call)"
        if not syns:
            return "no TCP packet: the caller's own kernel refused the call"
        local = syns.pop()
    mine = [p for p in run.packets if p.time_ns <= call.time_ns and local in (p.source, p.destination)]
    first = next((i for i in range(len(mine) - 1, -1, -1) if mine[i].flags == "S"), None)
    while first is not None and first > 0 and mine[first - 1].flags == "S":  # back to the first of its SYN retries
        first -= 1
    mine = mine[first or 0:]
    who = dict(zip((id(p) for p in run.packets), (f.rsplit(" [", 1)[0] for f in run.flow()), strict=True))
    told = []
    for p in mine:
        by = "it" if p.source == local else who[id(p)]
        if "R" in p.flags:
            taken = _taken_in(run, p, local) if p.destination == local else ""
            told.append(f"RST {'sent by it' if by == 'it' else 'from ' + by} ({_sent_reset(run, p)}{taken})")
        elif "F" in p.flags:
            told.append("FIN sent by it" if by == "it" else f"FIN from {by}")
    if told:
        return ", then ".join(told)
    syns = sum(1 for p in mine if p.flags == "S" and p.source == local)
    if syns and not any(p.flags == "S." and p.destination == local for p in mine):
        return f"no SYN-ACK: {syns} SYN{'s' if syns > 1 else ''} unanswered"
    return "no FIN or RST either way" if mine else "no packet"


def error_rows(run: Run) -> list[dict[str, str]]:
    """One plain row per failed call of `run`: its message, then ``ERROR_COLUMNS``."""
    rows = []
    for index, call in enumerate(run.calls):
        if not call.failed:
            continue
        who = run.actor(call)
        inode = call.socket.inode
        earlier = [c for c in run.calls[:index] if c.failed and inode and c.socket.inode == inode]
        rows.append({"message": message_of(call),
                     "call": f"{who}: {call.label}" if who else call.label,
                     "raised": raised_as(call),
                     "socket before the call": _state_before(run, call),
                     "on the wire before the call": on_the_wire(run, call),
                     "earlier error on that socket": ", ".join(f"{c.label}: {c.error}" for c in earlier) or "none"})
    return rows
