"""RFC 9293's state diagram, drawn from the transitions table in ``_tcp``.

Theory of operation
-------------------
The nodes sit where Figure 5 puts them, with the top half mirrored so the
client runs down the left and the server down the right; every edge is a row
of ``_tcp.TRANSITIONS``. Rows the RFC's figure leaves out (``shown=False``)
are drawn dashed, and only when a highlighted path uses them; their curve and
label position are chosen to keep clear of what is already placed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._tcp import TRANSITIONS, Transition

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
