r"""The TCP state machine of RFC 9293, as a data table, and its diagram.

Theory of operation
-------------------
``TRANSITIONS`` is the state machine: one row per ``(from_state, event,
to_state)``, with the segment the endpoint sends (``action``), where the RFC
says so (``source``, a key of ``QUOTES``) and whether the drawing shows it by
default (``shown``). Everything else here reads that table: ``path`` searches
it, ``draw_state_diagram`` draws it, the pages quote it. Nothing is inferred
from code paths, so a page can show the row a claim rests on.

States are ``_vocab.State`` members (the kernel's states; the table may be
written with any spelling, ``"CLOSED"`` or ``"FIN_WAIT2"``, and stores the
member). A request socket (``NEW_SYN_RECV``) is ``SYN_RECV`` here: RFC 9293
has no such state. Events are socket calls where the application causes them
(``close()``, ``connect()``) and ``rcv ...`` where a segment does, as in the
RFC's figure.

The drawn transitions are RFC 9293 Figure 5 (section 3.3.2), quoted here with
its notes; the ``shown=False`` rows are the ones its notes and text describe
but the figure leaves out "for legibility", plus one Linux rule (tcp(7)). The
figure's layout is kept, with the top half mirrored so that the client (active
open, active close) runs down the left and the server (passive open, passive
close) down the right::

                                +---------+ ---------\      active OPEN
                                |  CLOSED |            \    -----------
                                +---------+<---------\   \   create TCB
                                  |     ^              \   \  snd SYN
                     passive OPEN |     |   CLOSE        \   \
                     ------------ |     | ----------       \   \
                      create TCB  |     | delete TCB         \   \
                                  V     |                      \   \
              rcv RST (note 1)  +---------+            CLOSE    |    \
           -------------------->|  LISTEN |          ---------- |     |
          /                     +---------+          delete TCB |     |
         /           rcv SYN      |     |     SEND              |     |
        /           -----------   |     |    -------            |     V
    +--------+      snd SYN,ACK  /       \   snd SYN          +--------+
    |        |<-----------------           ------------------>|        |
    |  SYN   |                    rcv SYN                     |  SYN   |
    |  RCVD  |<-----------------------------------------------|  SENT  |
    |        |                  snd SYN,ACK                   |        |
    |        |------------------           -------------------|        |
    +--------+   rcv ACK of SYN  \       /  rcv SYN,ACK       +--------+
       |         --------------   |     |   -----------
       |                x         |     |     snd ACK
       |                          V     V
       |  CLOSE                 +---------+
       | -------                |  ESTAB  |
       | snd FIN                +---------+
       |                 CLOSE    |     |    rcv FIN
       V                -------   |     |    -------
    +---------+         snd FIN  /       \   snd ACK         +---------+
    |  FIN    |<----------------          ------------------>|  CLOSE  |
    | WAIT-1  |------------------                            |   WAIT  |
    +---------+          rcv FIN  \                          +---------+
      | rcv ACK of FIN   -------   |                          CLOSE  |
      | --------------   snd ACK   |                         ------- |
      V        x                   V                         snd FIN V
    +---------+               +---------+                    +---------+
    |FINWAIT-2|               | CLOSING |                    | LAST-ACK|
    +---------+               +---------+                    +---------+
      |              rcv ACK of FIN |                 rcv ACK of FIN |
      |  rcv FIN     -------------- |    Timeout=2MSL -------------- |
      |  -------            x       V    ------------        x       V
       \ snd ACK              +---------+delete TCB          +---------+
         -------------------->|TIME-WAIT|------------------->| CLOSED  |
                              +---------+                    +---------+

                     Figure 5: TCP Connection State Diagram

A Linux difference the table does not model: a listener stays in LISTEN; each
SYN creates a request socket (``NEW_SYN_RECV``, ``SYN-RECV`` in ``ss``) that
becomes the accepted socket. ``State.machine`` maps it to ``SYN_RECV``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence

from ._vocab import State

#: The states of RFC 9293's machine (the kernel's, less its request socket).
STATES = tuple(s for s in State if s is not State.NEW_SYN_RECV)

#: Where each transition comes from, in the words of its source.
QUOTES = {
    "RFC 9293 Figure 5": "NOTA BENE: This diagram is only a summary and must not be taken as the total "
                         "specification. Many details are not included.",
    "RFC 9293 Figure 5 note 1": "The transition from SYN-RECEIVED to LISTEN on receiving a RST is "
                                "conditional on having reached SYN-RECEIVED after a passive OPEN.",
    "RFC 9293 Figure 5 note 2": "The figure omits a transition from FIN-WAIT-1 to TIME-WAIT if a FIN is "
                                "received and the local FIN is also acknowledged.",
    "RFC 9293 3.10.7.3": "If the ACK was acceptable, then signal to the user \"error: connection reset\", "
                         "drop the segment, enter CLOSED state, delete TCB, and return.",
    "RFC 9293 3.10.7.4": "If the RST bit is set, then any outstanding RECEIVEs and SEND should receive "
                         "\"reset\" responses. All segment queues should be flushed. Users should also "
                         "receive an unsolicited general \"connection reset\" signal. Enter the CLOSED "
                         "state, delete the TCB, and return.",
    "RFC 9293 3.10.5": "Send a reset segment: <SEQ=SND.NXT><CTL=RST> [...] Delete the TCB, enter CLOSED "
                       "state, and return.",
    "RFC 9293 3.6.1": "If such a host issues a CLOSE call while received data is still pending in the TCP "
                      "connection, or if new data is received after CLOSE is called, its TCP "
                      "implementation SHOULD send a RST to show that data was lost (SHLD-3).",
    "tcp(7) tcp_fin_timeout": "This specifies how many seconds to wait for a final FIN packet before the "
                              "socket is forcibly closed. This is strictly a violation of the TCP "
                              "specification, but required to prevent denial-of-service attacks.",
}


@dataclasses.dataclass(frozen=True)
class Transition:
    """One row of the state machine (states may be given in any spelling)."""

    from_state: State
    event: str
    to_state: State
    action: str = ""  #: what the endpoint sends ("snd FIN"), "" for nothing
    source: str = "RFC 9293 Figure 5"  #: a key of QUOTES
    shown: bool = True  #: drawn by default (the rest only when highlighted)

    def __post_init__(self) -> None:
        for field in ("from_state", "to_state"):
            object.__setattr__(self, field, State.parse(getattr(self, field)).machine)

    def __str__(self) -> str:
        return f"{self.from_state.rfc} --{self.event}--> {self.to_state.rfc}"


_F5, _T, _S = "RFC 9293 Figure 5", Transition, State
#: RFC 9293's TCP state machine: Figure 5, then what its notes and text add.
TRANSITIONS: tuple[Transition, ...] = (
    _T(_S.CLOSE, "listen()", _S.LISTEN, "create TCB"),                   # passive OPEN
    _T(_S.CLOSE, "connect()", _S.SYN_SENT, "snd SYN"),                   # active OPEN
    _T(_S.LISTEN, "rcv SYN", _S.SYN_RECV, "snd SYN-ACK"),
    _T(_S.LISTEN, "close()", _S.CLOSE, "delete TCB"),
    _T(_S.SYN_SENT, "rcv SYN-ACK", _S.ESTABLISHED, "snd ACK"),
    _T(_S.SYN_SENT, "rcv SYN", _S.SYN_RECV, "snd SYN-ACK"),               # simultaneous open
    _T(_S.SYN_SENT, "close()", _S.CLOSE, "delete TCB"),
    _T(_S.SYN_RECV, "rcv ACK of SYN", _S.ESTABLISHED),
    _T(_S.SYN_RECV, "rcv RST", _S.LISTEN, "", f"{_F5} note 1"),
    _T(_S.ESTABLISHED, "close()", _S.FIN_WAIT1, "snd FIN"),
    _T(_S.ESTABLISHED, "rcv FIN", _S.CLOSE_WAIT, "snd ACK"),
    _T(_S.FIN_WAIT1, "rcv ACK of FIN", _S.FIN_WAIT2),
    _T(_S.FIN_WAIT1, "rcv FIN", _S.CLOSING, "snd ACK"),
    _T(_S.FIN_WAIT2, "rcv FIN", _S.TIME_WAIT, "snd ACK"),
    _T(_S.CLOSING, "rcv ACK of FIN", _S.TIME_WAIT),
    _T(_S.CLOSE_WAIT, "close()", _S.LAST_ACK, "snd FIN"),
    _T(_S.LAST_ACK, "rcv ACK of FIN", _S.CLOSE),
    _T(_S.TIME_WAIT, "timeout 2MSL", _S.CLOSE, "delete TCB"),  # Linux: 60 s, TCP_TIMEWAIT_LEN
    # In Figure 5 but left out of our drawing: no socket call sends on a listener, and the
    # SYN_RECV close() edge would cross the picture (both still drawn when highlighted).
    _T(_S.LISTEN, "send()", _S.SYN_SENT, "snd SYN", shown=False),
    _T(_S.SYN_RECV, "close()", _S.FIN_WAIT1, "snd FIN", shown=False),
    # Figure 5 note 2.
    _T(_S.FIN_WAIT1, "rcv FIN + ACK of FIN", _S.TIME_WAIT, "snd ACK", f"{_F5} note 2", False),
    # Note 3: "receipt of a RST from any state results in a transition to LISTEN or CLOSED".
    _T(_S.SYN_SENT, "rcv RST", _S.CLOSE, "", "RFC 9293 3.10.7.3", False),
    *(_T(s, "rcv RST", _S.CLOSE, "", "RFC 9293 3.10.7.4", False)
      for s in (_S.ESTABLISHED, _S.FIN_WAIT1, _S.FIN_WAIT2, _S.CLOSE_WAIT, _S.CLOSING, _S.LAST_ACK, _S.TIME_WAIT)),
    # ABORT: on Linux, close() with SO_LINGER {l_onoff=1, l_linger=0}.
    *(_T(s, "close() with SO_LINGER 0", _S.CLOSE, "snd RST", "RFC 9293 3.10.5", False)
      for s in (_S.SYN_RECV, _S.ESTABLISHED, _S.FIN_WAIT1, _S.FIN_WAIT2, _S.CLOSE_WAIT)),
    *(_T(s, "rcv data after close()", _S.CLOSE, "snd RST", "RFC 9293 3.6.1", False)
      for s in (_S.FIN_WAIT1, _S.FIN_WAIT2)),
    # Linux's tcp_close(): data still unread when the last descriptor closes -> RST, not FIN.
    *(_T(s, "close() with unread data", _S.CLOSE, "snd RST", "RFC 9293 3.6.1", False)
      for s in (_S.ESTABLISHED, _S.CLOSE_WAIT, _S.FIN_WAIT2)),
    _T(_S.FIN_WAIT2, "timeout tcp_fin_timeout", _S.CLOSE, "", "tcp(7) tcp_fin_timeout", False),
)
EVENTS = tuple(dict.fromkeys(t.event for t in TRANSITIONS))

def transition(from_state: str | State, event: str) -> Transition:
    """The row for `event` in `from_state`; ValueError naming the events possible there."""
    state = State.parse(from_state).machine
    for t in TRANSITIONS:
        if t.from_state is state and t.event == event:
            return t
    possible = ", ".join(repr(t.event) for t in TRANSITIONS if t.from_state is state) or "none"
    raise ValueError(f"no transition for {event!r} in {state.rfc}; events there: {possible}")


def _search(start: State, goal: State, rows: Sequence[Transition]) -> list[Transition] | None:
    """Fewest transitions from `start` to `goal` (breadth first, table order breaks ties)."""
    came: dict[State, Transition | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state == goal:
            steps = []
            while (step := came[state]) is not None:
                steps.append(step)
                state = step.from_state
            return steps[::-1]
        if state is State.CLOSE and state is not start:
            continue  # a closed socket's story is over: CLOSED only starts or ends a path
        for t in rows:
            if t.from_state == state and t.to_state not in came:
                came[t.to_state] = t
                queue.append(t.to_state)
    return None


def path(states: Sequence[str | State]) -> list[Transition]:
    """The transitions a socket took through the observed `states`, in order.

    Snapshots miss fast states (FIN_WAIT1 lasts until the peer's ACK), so each
    step is the shortest way between two observed states (never through
    CLOSED), using Figure 5's drawn transitions where they suffice. Repeats are
    ignored. An item may be an event instead (``"rcv RST"``): it picks the
    transition out of the state before it, where the run shows which one::

        path(["ESTABLISHED", "FIN_WAIT2"])         # close(), rcv ACK of FIN
        path(["CLOSE_WAIT", "rcv RST", "CLOSED"])  # rcv RST, not close() + rcv ACK of FIN
    """
    steps: list[Transition] = []
    current: State | None = None
    for item in states:
        if isinstance(item, str) and item in EVENTS:
            if current is None:
                raise ValueError(f"path {list(states)!r} starts with the event {item!r}: start with a state")
            steps.append(transition(current, item))
            current = steps[-1].to_state
            continue
        try:
            state = State.parse(item).machine
        except ValueError as e:
            raise ValueError(f"{e}; or an event to choose a transition: {', '.join(EVENTS)}") from None
        if current is not None and state is not current:
            found = (_search(current, state, [t for t in TRANSITIONS if t.shown])
                     or _search(current, state, TRANSITIONS))
            if found is None:
                raise ValueError(f"no path from {current.rfc} to {state.rfc} in RFC 9293's TCP state machine")
            steps += found
        current = state
    return steps
