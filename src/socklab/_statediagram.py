"""RFC 9293's state diagram, drawn from the transitions table in ``_tcp``.

Theory of operation
-------------------
The nodes sit where Figure 5 puts them, with the top half mirrored so the
client runs down the left and the server down the right; every edge is a row
of ``_tcp.TRANSITIONS``. Rows the RFC's figure leaves out (``shown=False``)
are drawn dashed, and only when a highlighted path uses them.

Labels keep clear of each other and of the states (the tests check every
page's paths and every dashed row). Each label's size is measured with the
renderer, as it would be in bold, so that a solid label sits in the same place
whether highlighted or not; every box placed before it is an obstacle: the
states, the legend, the footnote and the earlier labels. A solid edge keeps
its line and slides its label along it until the label is ``_MARGIN`` clear.
A dashed edge chooses its curve and its label's spot together: a clear spot
and a line through no state first; then the line furthest from the states and
under the fewest labels, with the label on it, or beside it where only that
is clear, or wrapped narrower where nothing is. Labels are drawn above every
line, so one that a line has to cross stays legible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._tcp import TRANSITIONS, Transition
from ._vocab import State

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

#: Node centres in inches (y down): Figure 5's places with the top half mirrored (client
#: left), and the final CLOSED moved under TIME_WAIT so that every way out can reach it.
#: CLOSED is drawn twice, as in the RFC: where connections begin and where they end.
_L, _C, _R = 0.85, 3.25, 5.65
_END = "CLOSE (end)"  #: the node key of the CLOSED where connections end; the others are State names
_POS = {"CLOSE": (_C, 0.55), "LISTEN": (_C, 1.6), "SYN_SENT": (_L, 2.65), "SYN_RECV": (_R, 2.65),
        "ESTABLISHED": (_C, 3.7), "FIN_WAIT1": (_L, 4.75), "CLOSE_WAIT": (_R, 4.75), "FIN_WAIT2": (_L, 5.85),
        "CLOSING": (_C, 5.85), "LAST_ACK": (_R, 5.85), "TIME_WAIT": (_C, 6.9), _END: (_C, 7.95)}
_HEIGHT = 8.65
_BEGIN = {State.LISTEN, State.SYN_SENT}  # their CLOSED is the top one
#: Bend, label position along the arc, label shift (x, y) for the edges that need one; the
#: rest go straight, and highlighted ``shown=False`` rows are routed (``_route``).
_ROUTE = {(State.CLOSE, "listen()"): (0, 0.5, -0.55, 0), (State.LISTEN, "close()"): (0, 0.5, 0.45, 0),
          (State.CLOSE, "connect()"): (0.12, 0.5, 0, 0), (State.SYN_SENT, "close()"): (0.12, 0.5, 0, 0),
          (State.SYN_RECV, "rcv RST"): (0.3, 0.5, 0, 0)}
_SHIFT = {(State.CLOSE, "listen()"): -0.3, (State.LISTEN, "close()"): 0.3}  # the two parallel lines
PALETTE = ("#0550ae", "#bc4c00", "#1a7f37", "#8250df")
_PAD = 0.12  #: a label's background box padding, in font sizes


def _node(t: Transition, end: str) -> str:
    """The node a transition leaves (`end` "from") or enters ("to")."""
    state = t.to_state if end == "to" else t.from_state
    if state is State.CLOSE and end == "to" and t.from_state not in _BEGIN:
        return _END
    return state.name


def _gid(node: str) -> str:
    """A node's id in the figure (and an SVG's element ids): ``FIN_WAIT2``, ``CLOSE-end``."""
    return "CLOSE-end" if node == _END else node


def _name(node: str) -> str:
    """What a node says: its state as RFC 9293 spells it (a picture's spelling, see ``_vocab``)."""
    return State[node.split()[0]].rfc


def _label(t: Transition, width: int = 14) -> str:
    """Event, then what is sent; long events wrapped to keep labels narrow."""
    import textwrap

    lines = textwrap.wrap(t.event, width) + ([t.action] if t.action.startswith("snd") else [])
    return "\n".join(lines)


def _point(a: tuple, b: tuple, bend: float, t: float) -> tuple[float, float]:
    """A point of matplotlib's ``arc3`` arc from `a` to `b` (a quadratic Bezier; y is down)."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2 - bend * (y2 - y1), (y1 + y2) / 2 + bend * (x2 - x1)
    return ((1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t**2 * x2,
            (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t**2 * y2)


_Box = tuple[float, float, float, float]  #: centre x, centre y, width, height (inches, y down)
_NODE = (1.3, 0.38)  #: a state's box
_MARGIN = 0.06  #: clearance of a label from every other box, inches
_AT = (0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65, 0.3, 0.7, 0.25, 0.75)  #: label spots along an arc
_WRAP = (14, 10)  #: characters per line of a dashed label's event: the first that finds a clear spot
_OFF = (0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45)  #: a dashed label's steps off its line (inches)
_BENDS = (0, *(b * sign for b in (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.75) for sign in (1, -1)))


def _gap(x: float, y: float, w: float, h: float, boxes: Sequence[_Box]) -> float:
    """Distance from a w x h rectangle centred at (x, y) to the nearest of `boxes` (same form)."""
    return min(((max(abs(x - bx) - (w + bw) / 2, 0) ** 2 + max(abs(y - by) - (h + bh) / 2, 0) ** 2) ** 0.5
                for bx, by, bw, bh in boxes), default=float("inf"))


def _slide(a: tuple, b: tuple, bend: float, at: float, shift: tuple[float, float], size: tuple[float, float],
           boxes: Sequence[_Box]) -> float:
    """Where along its arc a label goes: `at` if clear by ``_MARGIN``, else the nearest clear spot."""
    best = (-1.0, at)
    for t in sorted((at + d for d in (0, -0.05, 0.05, -0.1, 0.1, -0.15, 0.15, -0.2, 0.2)), key=lambda t: abs(t - at)):
        x, y = _point(a, b, bend, t)
        gap = _gap(x + shift[0], y + shift[1], *size, boxes)
        if gap >= _MARGIN:
            return t
        best = max(best, (gap, t))
    return best[1]


def _route(a: str, b: str, size: tuple[float, float], boxes: Sequence[_Box], labels: Sequence[_Box],
           used: list[float]) -> tuple[bool, float, float, float, float]:
    """(clear, bend, t, dx, dy) for a dashed edge: its arc, its label's spot along it and shift off it.

    First a label spot clear of `boxes` (states, legend, footnote, labels) by ``_MARGIN`` and a line
    through no state; among those, the line furthest from the other states, under the fewest
    `labels`, with the label on it or as near as it fits (``_OFF`` steps across the line).
    `clear` is False when no spot was clear and the best of the rest was taken.
    """
    (x1, y1), (x2, y2) = _POS[a], _POS[b]
    length = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
    nx, ny = -(y2 - y1) / length, (x2 - x1) / length  # across the chord
    nodes = [(x, y, *_NODE) for n, (x, y) in _POS.items() if n not in (a, b)]
    best: tuple[tuple[bool, float], tuple[float, float, float, float]] = ((False, -1e9), (0.0, 0.5, 0.0, 0.0))
    for bend in _BENDS:
        if any(abs(bend - u) < 0.25 for u in used):
            continue
        points = [_point(_POS[a], _POS[b], bend, k / 80) for k in range(10, 71)]
        line = min(_gap(x, y, 0, 0, nodes) for x, y in points)
        crossed = sum(any(_gap(x, y, 0, 0, [box]) < 0.02 for x, y in points) for box in labels)
        for t in _AT:
            x, y = _point(_POS[a], _POS[b], bend, t)
            for off in _OFF:
                label = _gap(x + off * nx, y + off * ny, *size, boxes)
                score = (2 * min(line, 0.2) - 0.15 * crossed + min(label, 0.15)
                         - 0.05 * abs(bend) - 0.1 * abs(t - 0.5) - 0.5 * abs(off))
                key = (label >= _MARGIN and line > 0, score)  # a clear label, a line through no state
                if key > best[0]:
                    best = (key, (bend, t, off * nx, off * ny))
    return (best[0][0], *best[1])


def _box(ax: Axes, extent: Bbox) -> _Box:
    """A display-space extent as (centre x, centre y, width, height) in the axes' inches."""
    (x0, y0), (x1, y1) = ax.transData.inverted().transform(extent.get_points())
    return (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0), abs(y1 - y0)


def _size(ax: Axes, text: Text) -> tuple[float, float]:
    """Width and height of `text` with its background box, measured as if bold (inches)."""
    weight = text.get_fontweight()
    text.set_fontweight("bold")
    _, _, w, h = _box(ax, text.get_window_extent())
    text.set_fontweight(weight)
    pad = 2 * _PAD * float(text.get_fontsize()) / 72  # the bbox's pad is a fraction of the font size
    return w + pad, h + pad


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
    patches = {}
    for node, (x, y) in _POS.items():
        colour = node_colour.get(node)
        patches[node] = ax.add_patch(FancyBboxPatch(
            (x - _NODE[0] / 2, y - _NODE[1] / 2), *_NODE, boxstyle="round,pad=0,rounding_size=0.08",
            facecolor="white", edgecolor=colour or MUTED, lw=2.4 if colour else 1.1, zorder=3,
            gid=f"state-{_gid(node)}"))
        ax.text(x, y, _name(node), ha="center", va="center", fontsize=FONT, zorder=4, color=colour or INK,
                weight="bold" if colour else "normal", gid=f"name-{_gid(node)}")
    boxes: list[_Box] = [(x, y, *_NODE) for x, y in _POS.values()]  # what a label must keep clear of
    labels: list[_Box] = []  # the labels placed so far (also in boxes)
    if paths and list(paths) != ["path"]:
        legend = ax.legend(handles=[Line2D([], [], color=PALETTE[i % len(PALETTE)], lw=2.6, label=name)
                                    for i, name in enumerate(paths)],
                           loc="upper left", bbox_to_anchor=(0.03, 0.985), frameon=False, fontsize=FONT)
        boxes.append(_box(ax, legend.get_window_extent()))
    note = ax.text(_C, _HEIGHT - 0.3, "After RFC 9293 Figure 5; dashed: transitions it leaves out",
                   ha="center", va="center", fontsize=SMALL, color=MUTED, style="italic")
    boxes.append(_box(ax, note.get_window_extent()))
    used: dict[tuple[str, str], list[float]] = {}  # bends per pair of states
    for t in sorted((t for t in TRANSITIONS if t.shown or t in colour_of), key=lambda t: not t.shown):
        colour = colour_of.get(t)
        a, b = _node(t, "from"), _node(t, "to")
        label = ax.text(0, 0, _label(t), ha="center", va="center", fontsize=SMALL, linespacing=1.1,
                        color=colour or MUTED, weight="bold" if colour else "normal", zorder=7 if colour else 6,
                        gid=f"label-{t.from_state.name}-{t.event}-{t.to_state.name}",
                        bbox={"boxstyle": f"round,pad={_PAD}", "facecolor": CARD, "edgecolor": "none",
                              "alpha": 0.9})
        size = _size(ax, label)
        bend, at, dx, dy = _ROUTE.get((t.from_state, t.event), (0.0, 0.5, 0.0, 0.0))
        shift = _SHIFT.get((t.from_state, t.event), 0.0)
        (x1, y1), (x2, y2) = _POS[a], _POS[b]
        x1, x2 = x1 + shift, x2 + shift
        if t.shown:
            at = _slide((x1, y1), (x2, y2), bend, at, (dx, dy), size, boxes)
        else:
            for width in _WRAP:  # narrower only where the label finds no clear spot
                label.set_text(_label(t, width))
                size = _size(ax, label)
                clear, bend, at, dx, dy = _route(a, b, size, boxes, labels, used.get((a, b), []))
                if clear:
                    break
        used.setdefault((a, b), []).append(bend)
        ax.add_artist(FancyArrowPatch((x1, y1), (x2, y2), patchA=patches[a], patchB=patches[b],
                                     connectionstyle=f"arc3,rad={bend}", arrowstyle="-|>",
                                     mutation_scale=13 if colour else 10, lw=2.6 if colour else 1.0,
                                     color=colour or MUTED, zorder=5 if colour else 2,
                                     linestyle="-" if t.shown else (0, (4, 2)),
                                     gid=f"transition-{t.from_state.name}-{t.event}-{t.to_state.name}"))
        lx, ly = _point((x1, y1), (x2, y2), bend, at)
        label.set_position((lx + dx, ly + dy))
        labels.append((lx + dx, ly + dy, *size))
        boxes.append(labels[-1])
    return fig
