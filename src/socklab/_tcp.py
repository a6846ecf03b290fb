r"""The TCP state machine of RFC 9293, as a data table, and its diagram.

Theory of operation
-------------------
``TRANSITIONS`` is the state machine: one row per ``(from_state, event,
to_state)``, with the segment the endpoint sends (``action``), where the RFC
says so (``source``, a key of ``QUOTES``) and whether the drawing shows it by
default (``shown``). Everything else here reads that table: ``path`` searches
it, ``draw_state_diagram`` draws it, the pages quote it. Nothing is inferred
from code paths, so a page can show the row a claim rests on.

States use the kernel's names (``include/net/tcp_states.h``, as ``_states``
and ``ss -tn`` state filters do) except for the closed state: the kernel calls
it ``CLOSE``, the RFC ``CLOSED``; we say ``CLOSED`` and ``state_name`` maps the
kernel's (and ``ss``'s) spellings onto ours. Events are socket calls where the
application causes them (``close()``, ``connect()``) and ``rcv ...`` where a
segment does, as in the RFC's figure.

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
becomes the accepted socket. ``state_name`` maps it to ``SYN_RECV``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._states import kernel_state

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATES = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
          "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT")

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
    """One row of the state machine."""

    from_state: str
    event: str
    to_state: str
    action: str = ""  #: what the endpoint sends ("snd FIN"), "" for nothing
    source: str = "RFC 9293 Figure 5"  #: a key of QUOTES
    shown: bool = True  #: drawn by default (the rest only when highlighted)

    def __str__(self) -> str:
        return f"{self.from_state} --{self.event}--> {self.to_state}"


_F5, _T = "RFC 9293 Figure 5", Transition
#: RFC 9293's TCP state machine: Figure 5, then what its notes and text add.
TRANSITIONS: tuple[Transition, ...] = (
    _T("CLOSED", "listen()", "LISTEN", "create TCB"),                   # passive OPEN
    _T("CLOSED", "connect()", "SYN_SENT", "snd SYN"),                   # active OPEN
    _T("LISTEN", "rcv SYN", "SYN_RECV", "snd SYN-ACK"),
    _T("LISTEN", "close()", "CLOSED", "delete TCB"),
    _T("SYN_SENT", "rcv SYN-ACK", "ESTABLISHED", "snd ACK"),
    _T("SYN_SENT", "rcv SYN", "SYN_RECV", "snd SYN-ACK"),               # simultaneous open
    _T("SYN_SENT", "close()", "CLOSED", "delete TCB"),
    _T("SYN_RECV", "rcv ACK of SYN", "ESTABLISHED"),
    _T("SYN_RECV", "rcv RST", "LISTEN", "", f"{_F5} note 1"),
    _T("ESTABLISHED", "close()", "FIN_WAIT1", "snd FIN"),
    _T("ESTABLISHED", "rcv FIN", "CLOSE_WAIT", "snd ACK"),
    _T("FIN_WAIT1", "rcv ACK of FIN", "FIN_WAIT2"),
    _T("FIN_WAIT1", "rcv FIN", "CLOSING", "snd ACK"),
    _T("FIN_WAIT2", "rcv FIN", "TIME_WAIT", "snd ACK"),
    _T("CLOSING", "rcv ACK of FIN", "TIME_WAIT"),
    _T("CLOSE_WAIT", "close()", "LAST_ACK", "snd FIN"),
    _T("LAST_ACK", "rcv ACK of FIN", "CLOSED"),
    _T("TIME_WAIT", "timeout 2MSL", "CLOSED", "delete TCB"),  # Linux: 60 s, TCP_TIMEWAIT_LEN
    # In Figure 5 but left out of our drawing: no socket call sends on a listener, and the
    # SYN_RECV close() edge would cross the picture (both still drawn when highlighted).
    _T("LISTEN", "send()", "SYN_SENT", "snd SYN", shown=False),
    _T("SYN_RECV", "close()", "FIN_WAIT1", "snd FIN", shown=False),
    # Figure 5 note 2.
    _T("FIN_WAIT1", "rcv FIN + ACK of FIN", "TIME_WAIT", "snd ACK", f"{_F5} note 2", False),
    # Note 3: "receipt of a RST from any state results in a transition to LISTEN or CLOSED".
    _T("SYN_SENT", "rcv RST", "CLOSED", "", "RFC 9293 3.10.7.3", False),
    *(_T(s, "rcv RST", "CLOSED", "", "RFC 9293 3.10.7.4", False)
      for s in ("ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT")),
    # ABORT: on Linux, close() with SO_LINGER {l_onoff=1, l_linger=0}.
    *(_T(s, "close() with SO_LINGER 0", "CLOSED", "snd RST", "RFC 9293 3.10.5", False)
      for s in ("SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT")),
    *(_T(s, "rcv data after close()", "CLOSED", "snd RST", "RFC 9293 3.6.1", False)
      for s in ("FIN_WAIT1", "FIN_WAIT2")),
    _T("FIN_WAIT2", "timeout tcp_fin_timeout", "CLOSED", "", "tcp(7) tcp_fin_timeout", False),
)
EVENTS = tuple(dict.fromkeys(t.event for t in TRANSITIONS))

_ALIASES = {"CLOSE": "CLOSED", "UNCONN": "CLOSED", "NEW_SYN_RECV": "SYN_RECV", "SYN-RECEIVED": "SYN_RECV",
            "SYN-RCVD": "SYN_RECV", "SYN_RCVD": "SYN_RECV", "FINWAIT-2": "FIN_WAIT2", "ESTAB": "ESTABLISHED"}


def state_name(name: str) -> str:
    """Our name for a state given in kernel, ``ss`` or RFC spelling (``CLOSE`` -> ``CLOSED``)."""
    key = name.strip().upper()
    if key in STATES:
        return key
    try:
        kernel = _ALIASES.get(key) or kernel_state(key)
    except ValueError:
        raise ValueError(f"unknown TCP state {name!r}; the states are {', '.join(STATES)} "
                         "(ss and RFC spellings such as FIN-WAIT-2 are accepted too)") from None
    return _ALIASES.get(kernel, kernel)


def transition(from_state: str, event: str) -> Transition:
    """The row for `event` in `from_state`; ValueError naming the events possible there."""
    state = state_name(from_state)
    for t in TRANSITIONS:
        if t.from_state == state and t.event == event:
            return t
    possible = ", ".join(repr(t.event) for t in TRANSITIONS if t.from_state == state) or "none"
    raise ValueError(f"no transition for {event!r} in {state}; events there: {possible}")


def _search(start: str, goal: str, rows: Sequence[Transition]) -> list[Transition] | None:
    """Fewest transitions from `start` to `goal` (breadth first, table order breaks ties)."""
    came: dict[str, Transition | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state == goal:
            steps = []
            while (step := came[state]) is not None:
                steps.append(step)
                state = step.from_state
            return steps[::-1]
        if state == "CLOSED" and state != start:
            continue  # a closed socket's story is over: CLOSED only starts or ends a path
        for t in rows:
            if t.from_state == state and t.to_state not in came:
                came[t.to_state] = t
                queue.append(t.to_state)
    return None


def path(states: Sequence[str]) -> list[Transition]:
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
    current: str | None = None
    for item in states:
        if item in EVENTS:
            if current is None:
                raise ValueError(f"path {list(states)!r} starts with the event {item!r}: start with a state")
            steps.append(transition(current, item))
            current = steps[-1].to_state
            continue
        try:
            state = state_name(item)
        except ValueError as e:
            raise ValueError(f"{e}; or an event to choose a transition: {', '.join(EVENTS)}") from None
        if current is not None and state != current:
            found = (_search(current, state, [t for t in TRANSITIONS if t.shown])
                     or _search(current, state, TRANSITIONS))
            if found is None:
                raise ValueError(f"no path from {current} to {state} in RFC 9293's TCP state machine")
            steps += found
        current = state
    return steps


# -- the diagram ---------------------------------------------------------------
#: Node centres in inches (y down): Figure 5's places with the top half mirrored (client
#: left), and the final CLOSED moved under TIME_WAIT so that every way out can reach it.
#: CLOSED is drawn twice, as in the RFC: where connections begin and where they end.
_L, _C, _R = 0.85, 3.25, 5.65
_POS = {"CLOSED": (_C, 0.55), "LISTEN": (_C, 1.6), "SYN_SENT": (_L, 2.65), "SYN_RECV": (_R, 2.65),
        "ESTABLISHED": (_C, 3.7), "FIN_WAIT1": (_L, 4.75), "CLOSE_WAIT": (_R, 4.75), "FIN_WAIT2": (_L, 5.85),
        "CLOSING": (_C, 5.85), "LAST_ACK": (_R, 5.85), "TIME_WAIT": (_C, 6.9), "CLOSED ": (_C, 7.95)}
_HEIGHT = 8.65
_BEGIN = {"LISTEN", "SYN_SENT"}  # their CLOSED is the top one
#: Bend, label position along the arc, label shift (x, y) for the edges that need one; the
#: rest go straight, and highlighted ``shown=False`` rows are routed (``_route``).
_ROUTE = {("CLOSED", "listen()"): (0, 0.5, -0.55, 0), ("LISTEN", "close()"): (0, 0.5, 0.45, 0),
          ("CLOSED", "connect()"): (0.12, 0.5, 0, 0), ("SYN_SENT", "close()"): (0.12, 0.5, 0, 0),
          ("SYN_RECV", "rcv RST"): (0.3, 0.5, 0, 0)}
_SHIFT = {("CLOSED", "listen()"): -0.3, ("LISTEN", "close()"): 0.3}  # the two parallel lines
PALETTE = ("#0550ae", "#bc4c00", "#1a7f37", "#8250df")


def _node(t: Transition, end: str) -> str:
    state = t.to_state if end == "to" else t.from_state
    if state == "CLOSED" and end == "to" and t.from_state not in _BEGIN:
        return "CLOSED "
    return state


def _label(t: Transition) -> str:
    """Event, then what is sent; long events wrapped to keep labels narrow."""
    import textwrap

    lines = textwrap.wrap(t.event, 14) + ([t.action] if t.action.startswith("snd") else [])
    return "\n".join(lines)


def _point(a: tuple, b: tuple, bend: float, t: float) -> tuple[float, float]:
    """A point of matplotlib's ``arc3`` arc from `a` to `b` (a quadratic Bezier; y is down)."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2 - bend * (y2 - y1), (y1 + y2) / 2 + bend * (x2 - x1)
    return ((1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t**2 * x2,
            (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t**2 * y2)


def _gap(x: float, y: float, w: float, h: float, boxes: list[tuple[float, float, float, float]]) -> float:
    """Distance from a w x h rectangle centred at (x, y) to the nearest of `boxes` (same form)."""
    return min((max(abs(x - bx) - (w + bw) / 2, 0) ** 2 + max(abs(y - by) - (h + bh) / 2, 0) ** 2) ** 0.5
               for bx, by, bw, bh in boxes)


def _route(a: str, b: str, size: tuple[float, float], taken: list, used: list[float]) -> tuple[float, float]:
    """(bend, t): the arc and label spot keeping furthest from other states and labels."""
    nodes = [(x, y, 1.3, 0.38) for n, (x, y) in _POS.items() if n not in (a, b)]
    best = (-1.0, 0.0, 0.5)
    for bend in (0, 0.1, -0.1, 0.2, -0.2, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6, 0.75, -0.75):
        if any(abs(bend - u) < 0.25 for u in used):
            continue
        line = min(_gap(*_point(_POS[a], _POS[b], bend, k / 20), 0, 0, nodes) for k in range(3, 18))
        for t in (0.5, 0.4, 0.6, 0.3, 0.7):
            label = _gap(*_point(_POS[a], _POS[b], bend, t), *size, nodes + taken)
            score = 2 * min(line, 0.2) + min(label, 0.15) - 0.05 * abs(bend)  # the line matters most
            if score > best[0]:
                best = (score, bend, t)
    return best[1], best[2]


def state_diagram_alt(highlight: Sequence[Transition] | Mapping[str, Sequence[Transition]] = ()) -> str:
    """The state diagram in words, for the image's alt text."""
    paths = highlight if isinstance(highlight, Mapping) else {"highlighted": highlight}
    said = [f"{name}: " + " then ".join(f"{t.event} from {t.from_state} to {t.to_state}" for t in steps)
            for name, steps in paths.items() if steps]
    return "TCP state diagram after RFC 9293 Figure 5. " + ("; ".join(said) + "." if said else "")


def draw_state_diagram(highlight: Sequence[Transition] | Mapping[str, Sequence[Transition]] = ()) -> Figure:
    """Draw ``TRANSITIONS`` as a state diagram, `highlight` (a path, or {name: path}) in colour.

    Returns a matplotlib Figure. Rows with ``shown=False`` are drawn, dashed, only when highlighted.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from ._ladder import CARD, FONT, INK, MUTED, SMALL, card

    paths = dict(highlight) if isinstance(highlight, Mapping) else ({"path": list(highlight)} if highlight else {})
    colour_of: dict[Transition, str] = {}
    node_colour: dict[str, str] = {}
    for i, steps in enumerate(paths.values()):
        for t in steps:
            if t not in TRANSITIONS:
                raise ValueError(f"{t} is not a row of socklab._tcp.TRANSITIONS")
            colour_of.setdefault(t, PALETTE[i % len(PALETTE)])
            for end in ("from", "to"):
                node_colour.setdefault(_node(t, end), PALETTE[i % len(PALETTE)])
    fig, ax = card(_HEIGHT, state_diagram_alt(highlight))
    boxes = {}
    for node, (x, y) in _POS.items():
        colour = node_colour.get(node)
        boxes[node] = ax.add_patch(FancyBboxPatch(
            (x - 0.65, y - 0.19), 1.3, 0.38, boxstyle="round,pad=0,rounding_size=0.08", facecolor="white",
            edgecolor=colour or MUTED, lw=2.4 if colour else 1.1, zorder=3, gid=f"state-{node.strip()}"))
        ax.text(x, y, node.strip(), ha="center", va="center", fontsize=FONT, zorder=4, color=colour or INK,
                weight="bold" if colour else "normal")
    legend = paths and list(paths) != ["path"]
    taken = [(1.0, 0.15 + 0.12 * len(paths), 1.8, 0.25 * len(paths))] if legend else []  # labels so far
    used: dict[tuple[str, str], list[float]] = {}  # bends per pair of states
    for t in sorted((t for t in TRANSITIONS if t.shown or t in colour_of), key=lambda t: not t.shown):
        colour = colour_of.get(t)
        a, b = _node(t, "from"), _node(t, "to")
        text = _label(t)
        size = (0.075 * max(map(len, text.split("\n"))) + 0.1, 0.18 * (text.count("\n") + 1) + 0.05)
        bend, at, dx, dy = _ROUTE.get((t.from_state, t.event), (0.0, 0.5, 0.0, 0.0))
        if not t.shown:
            bend, at = _route(a, b, size, taken, used.get((a, b), []))
        used.setdefault((a, b), []).append(bend)
        shift = _SHIFT.get((t.from_state, t.event), 0.0)
        (x1, y1), (x2, y2) = _POS[a], _POS[b]
        x1, x2 = x1 + shift, x2 + shift
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), patchA=boxes[a], patchB=boxes[b],
                                     connectionstyle=f"arc3,rad={bend}", arrowstyle="-|>",
                                     mutation_scale=13 if colour else 10, lw=2.6 if colour else 1.0,
                                     color=colour or MUTED, zorder=5 if colour else 2,
                                     linestyle="-" if t.shown else (0, (4, 2)),
                                     gid=f"transition-{t.from_state}-{t.event}-{t.to_state}"))
        lx, ly = _point((x1, y1), (x2, y2), bend, at)
        taken.append((lx + dx, ly + dy, *size))
        ax.text(lx + dx, ly + dy, text, ha="center", va="center", fontsize=SMALL, linespacing=1.1,
                color=colour or MUTED, weight="bold" if colour else "normal", zorder=6 if colour else 4,
                gid=f"label-{t.from_state}-{t.event}-{t.to_state}",
                bbox={"boxstyle": "round,pad=0.12", "facecolor": CARD, "edgecolor": "none", "alpha": 0.9})
    if legend:
        ax.legend(handles=[Line2D([], [], color=PALETTE[i % len(PALETTE)], lw=2.6, label=name)
                           for i, name in enumerate(paths)],
                  loc="upper left", bbox_to_anchor=(0.03, 0.985), frameon=False, fontsize=FONT)
    ax.text(_C, _HEIGHT - 0.3, "After RFC 9293 Figure 5; dashed: transitions it leaves out",
            ha="center", va="center", fontsize=SMALL, color=MUTED, style="italic")
    return fig
