"""The kernel's account of a run: whose each event was, which resets were sent and why,
and the path each socket took, from the recorded events.

Theory of operation
-------------------
As root, the lab records the kernel's own events of the run's namespace
(``_kernel``: state changes, resets sent with their reason, resets received,
retransmissions, drops). This module reads them the way a page needs them:

* whose an event is: the role (``_roles``) of its socket's address. A
  connecting socket's first change (``CLOSE`` -> ``SYN_SENT``) has port 0, so it
  belongs to the socket whose peer is the same address (the client);
* the resets: who sent each and why, in the kernel's words
  (``include/net/rstreason.h``, quoted in ``RESET_REASONS``);
* the path each socket took through RFC 9293's state machine
  (``_tcp.path``): the states it was recorded in, up to its first ``CLOSE``,
  then how it ended. The ending is the kernel's: a reset it sent, by the
  reason's transition in ``REASON_EVENTS`` (data that arrived for a closed
  socket, a close with unread data, an abort); a reset it received
  (``rcv RST``); or, with no reset, the state the snapshots last show
  (``TIME_WAIT`` never appears as a new state in the events: the kernel swaps
  the socket for a timewait mini-socket, which the snapshots show).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from . import _roles, _tcp
from ._kevents import KernelEvent, ResetReceived, ResetSent, StateChange
from ._observed import Observed
from ._states import SocketRow
from ._vocab import Endpoint, State

#: enum sk_rst_reason, in the words of the kernel's own comments (include/net/rstreason.h).
RESET_REASONS = {
    "NOT_SPECIFIED": "reset reason is not specified",
    "NO_SOCKET": "no valid socket that can be used",
    "TCP_INVALID_ACK_SEQUENCE": "Not acceptable ACK SEQ field because ack sequence is not in the window "
                                "between snd_una and snd_nxt",
    "TCP_RFC7323_PAWS": "PAWS check",
    "TCP_TOO_OLD_ACK": "TCP ACK is too old",
    "TCP_ACK_UNSENT_DATA": "TCP ACK for data we haven't sent yet",
    "TCP_FLAGS": "TCP flags invalid",
    "TCP_OLD_ACK": "TCP ACK is old, but in window",
    "TCP_ABORT_ON_DATA": "abort on data corresponding to LINUX_MIB_TCPABORTONDATA",
    "TCP_TIMEWAIT_SOCKET": "happen on the timewait socket",
    "INVALID_SYN": "receive bad syn packet",
    "TCP_ABORT_ON_CLOSE": "abort on close corresponding to LINUX_MIB_TCPABORTONCLOSE",
    "TCP_ABORT_ON_LINGER": "abort on linger corresponding to LINUX_MIB_TCPABORTONLINGER",
    "TCP_ABORT_ON_MEMORY": "abort on memory corresponding to LINUX_MIB_TCPABORTONMEMORY",
    "TCP_STATE": "abort on tcp state",
    "TCP_KEEPALIVE_TIMEOUT": "time to timeout",
}

#: The transition of ``_tcp.TRANSITIONS`` a reset of this reason ends a socket's path with.
#: A timewait socket that resets is the orphan of a close() (FIN_WAIT2 after close() is a
#: timewait mini-socket on Linux), answering data: RFC 9293 3.6.1's "new data is received
#: after CLOSE is called". TCP_STATE is what close() with SO_LINGER {1, 0} sends
#: (tcp_close() -> tcp_disconnect()), measured.
REASON_EVENTS = {
    "TCP_ABORT_ON_DATA": "rcv data after close()",
    "TCP_TIMEWAIT_SOCKET": "rcv data after close()",
    "TCP_ABORT_ON_CLOSE": "close() with unread data",
    "TCP_STATE": "close() with SO_LINGER 0",
}


def endpoint(event: KernelEvent) -> Endpoint | None:
    """The address of the socket an event happened to, None when it has none."""
    if event.family not in (socket.AF_INET, socket.AF_INET6) or not event.saddr:
        return None
    return Endpoint(event.family, event.saddr, event.sport)


def peer(event: KernelEvent) -> Endpoint | None:
    if event.family not in (socket.AF_INET, socket.AF_INET6) or not event.daddr:
        return None
    return Endpoint(event.family, event.daddr, event.dport)


def before_its_port(event: KernelEvent) -> bool:
    """A connecting socket's change before its port was chosen (local port 0, the peer known):
    the active opener's, even when its SYN never left."""
    local, remote = endpoint(event), peer(event)
    return local is not None and local.port == 0 and remote is not None


def whose(run: Observed, event: KernelEvent) -> str:
    """The role of the socket an event happened to ("" when the kernel had no socket)."""
    if isinstance(event, ResetSent) and not event.sk:
        return ""  # a reset for a packet no socket wanted (NO_SOCKET)
    local = endpoint(event)
    if local is None:
        return ""
    if before_its_port(event):
        return "client"
    if isinstance(event, StateChange) and event.new is State.LISTEN:
        return "listener"
    if isinstance(event, StateChange) and event.old is State.LISTEN and event.new is State.CLOSE:
        return "listener"
    return _roles.endpoint_role(run, local)


def _kernel_name(state: State | None) -> str:
    return state.kernel if state is not None else "?"


def lost(run: Observed) -> dict[str, list[str]]:
    """{role: evidence} for each socket whose recorded state changes prove that one was not
    recorded (``_kernel``'s known limit: one run in several hundred loses one event). Roles
    are named as ``whose`` names them, as transition claims are.

    Two proofs, each from the kernel's own rules, each about one socket (its kernel address):
    its changes chain (each starts in the state the previous one ended in, unless the address
    is reused by a new socket, which starts at CLOSE, or LISTEN for one cloned from a
    listener); and a full socket leaves the socket table only by a change to CLOSE, so a
    socket that one snapshot showed and a later one, taken after its last recorded change,
    no longer shows must have had a change to CLOSE that was not recorded. A socket is found
    in a snapshot by its addresses, ports and host, never by a role's name."""
    found: dict[str, list[str]] = {}
    last: dict[int, StateChange] = {}
    for e in run.kernel_events:
        if not isinstance(e, StateChange) or not e.sk or e.old is None or e.new is None:
            continue
        before = last.get(e.sk)
        if before is not None and before.new is not e.old and not (
                before.new is State.CLOSE and e.old in (State.CLOSE, State.LISTEN)):
            found.setdefault(whose(run, e) or str(endpoint(e)), []).append(
                f"its socket went {_kernel_name(before.old)} -> {_kernel_name(before.new)}, then "
                f"{_kernel_name(e.old)} -> {_kernel_name(e.new)}: the change from {_kernel_name(before.new)} "
                f"to {_kernel_name(e.old)} was not recorded")
        last[e.sk] = e
    for e in last.values():
        if e.new is State.CLOSE:
            continue
        shown = [_shows(snap.rows, e) for snap in run.snapshots]
        for i, snap in enumerate(run.snapshots):
            if snap.time_ns > e.time_ns and not shown[i] and any(shown[:i]):
                found.setdefault(whose(run, e) or str(endpoint(e)), []).append(
                    f"its last recorded change is to {_kernel_name(e.new)}, yet the snapshot {snap.label!r} "
                    f"no longer shows it: its change to TCP_CLOSE was not recorded")
                break
    return found


def _shows(rows: Sequence[SocketRow], e: StateChange) -> bool:
    """Whether a snapshot's rows hold the socket of `e`: its host, its address and port (any port
    while it had none yet), and its peer (none for a listener)."""
    local, remote = endpoint(e), peer(e)
    if local is None:
        return False
    for row in rows:
        if row.netid != "tcp" or row.host != e.host or row.local.address != local.address:
            continue
        if local.port and row.local.port != local.port:
            continue
        if e.new is State.LISTEN or row.peer == remote:
            return True
    return False


def resets(run: Observed) -> list[tuple[str, str, State | None]]:
    """(who sent it, the kernel's reason, the sending socket's state) of every RST, in order."""
    return [(whose(run, e) or "no socket", e.reason or "(reason not recorded)", e.state)
            for e in run.kernel_events if isinstance(e, ResetSent)]


def states(run: Observed, role: str) -> list[State]:
    """The states the kernel moved `role`'s socket through, in order, from its first recorded one."""
    seen: list[State] = []
    for e in run.kernel_events:
        if isinstance(e, StateChange) and whose(run, e) == role:
            for state in (e.old, e.new):
                if state is not None and (not seen or seen[-1] is not state):
                    seen.append(state)
    return seen


def path_items(run: Observed, role: str) -> list[str | State]:
    """What ``_tcp.path`` needs for `role`: its states up to its first CLOSE, then how it ended."""
    recorded = states(run, role)
    start = 1 if recorded[:1] == [State.CLOSE] else 0  # a new socket starts CLOSED
    items: list[str | State] = [State.CLOSE] if start else []
    for state in recorded[start:]:
        if state is State.CLOSE:
            break
        items.append(state.machine)
    sent = [e for e in run.kernel_events if isinstance(e, ResetSent) and whose(run, e) == role]
    received = [e for e in run.kernel_events if isinstance(e, ResetReceived) and whose(run, e) == role]
    if sent and sent[0].reason in REASON_EVENTS:
        items.append(REASON_EVENTS[sent[0].reason])
    elif received:
        items.append("rcv RST")
    elif State.CLOSE in recorded[start:]:
        items.append(State.CLOSE)
    else:
        last = _last_snapshot_state(run, role)
        if last is not None:
            items.append(last.machine)
    return items


def path(run: Observed, role: str) -> list[_tcp.Transition]:
    """The transitions of RFC 9293's state machine `role`'s socket took in this run."""
    items = path_items(run, role)
    if not items:
        raise ValueError(f"the kernel recorded no state of {role!r} in run {run.name!r}")
    return _tcp.path(items)


def _last_snapshot_state(run: Observed, role: str) -> State | None:
    for snap in reversed(run.snapshots):
        table = _roles.table(run, snap.label)
        if role in table:
            return table[role].state
    return None


#: How close in time (ns) a socket's own reset and its RST are recorded when the kernel aborts it.
SAME_MOMENT_NS = 1_000_000


def aborted_itself(run: Observed, event: ResetReceived) -> bool:
    """Whether `event` is the kernel resetting its own socket rather than an RST arriving.

    ``tcp:tcp_receive_reset`` fires in ``tcp_reset()``, which also runs when the
    kernel aborts a socket itself (data arriving in FIN_WAIT1/FIN_WAIT2 after the
    program shut down reading: ``TCP_ABORT_ON_DATA``). Then the same socket sends an
    RST at the same moment. A socket that an arriving RST reset sends none: it is
    closed, and what reaches it later is answered with no socket (``NO_SOCKET``).
    """
    def same(e: KernelEvent) -> bool:
        if e.sk and event.sk:
            return e.sk == event.sk
        return (endpoint(e), peer(e)) == (endpoint(event), peer(event))

    return any(isinstance(e, ResetSent) and same(e) and abs(e.time_ns - event.time_ns) <= SAME_MOMENT_NS
               for e in run.kernel_events)


def describe(run: Observed, event: KernelEvent) -> str:
    """One event in words, the kernel's names quoted: ``TCP_FIN_WAIT1 -> TCP_FIN_WAIT2``."""
    def name(state: State | None) -> str:
        return state.kernel if state is not None else "?"

    kind = type(event).__name__
    if isinstance(event, StateChange):
        return f"state {name(event.old)} -> {name(event.new)}"
    if isinstance(event, ResetSent):
        where = f" by a socket in {name(event.state)}" if event.state is not None else " with no socket"
        return f"sent RST{where}: {event.reason or 'reason not recorded'}"
    if isinstance(event, ResetReceived):
        if aborted_itself(run, event):
            return (f"aborted by its own kernel in {name(event.state)} (tcp_reset), "
                    "then sent the RST: no RST arrived")
        return f"reset taken in {name(event.state)} (tcp_reset)"
    state = getattr(event, "state", None)
    if kind == "Retransmit":
        return f"retransmitted a segment in {name(state)}"
    if kind == "Dropped":
        return f"its [{getattr(event, 'flags', '')}] segment was dropped: {getattr(event, 'reason', '')}"
    return kind
