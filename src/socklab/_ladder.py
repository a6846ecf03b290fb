"""Ladder (sequence) diagrams of a run: packets, calls and socket states in time order.

Theory of operation
-------------------
A ladder has two lifelines: the endpoint that sent the first SYN (the client)
on the left, its peer on the right. Without a capture the client is found in
the snapshots (``_roles.role``). Everything drawn comes from the run:

* each captured packet of that connection is an arrow from sender to receiver,
  sloping down because time passes, labelled with its flags in words and its
  relative ``seq``/``ack`` (as the trace prints them);
* each recorded call on either socket is written beside its side's lifeline at
  the moment it *returned* (``Call.time_ns``), with its result or errno;
* each snapshot writes a side's state on its lifeline where the state changed,
  spelled as RFC 9293 does (a picture's spelling, see ``_vocab``); a socket
  that was in a snapshot and is gone from a later one is ``CLOSED``.

Packets, calls and snapshots are merged by time (the kernel's packet stamps and
the calls' ``time.time_ns()`` are the same realtime clock) and each gets its own
row: order is what a reader needs, so rows are evenly spaced and the real time
from the first packet is written at the left (``+2.216 ms``), not to scale.

Every artist that carries a fact has a ``gid`` (``packet-3``, ``packet-3-label``,
``call-1``, ``state-left-0``, ``time-4``): the tests check the picture against
the run through them, and an SVG keeps them as element ids.

Colours: a PNG cannot follow the site's light/dark switch, and dark text on a
transparent background vanishes in dark mode. So the figure draws its own very
light card with a grey rounded border; only the corners outside it are
transparent. The card reads the same on both themes. The alt text
(``ladder_alt``) is set as an invisible axes title, where sphinx-gallery's
scraper takes a figure's ``:alt:`` from.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from . import _events, _roles
from ._kevents import ResetSent, StateChange
from ._observed import Observed
from ._records import Call
from ._vocab import Endpoint, State

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ._trace import Packet

WIDTH = 6.5  #: inches: about 650 px at 100 dpi, shown scaled down on a phone
INK, MUTED, CARD, BORDER = "#1f2328", "#4d5661", "#f6f8fa", "#c4ccd5"
EMPHASIS, FIN_BLUE, STATE_FILL, STATE_EDGE = "#cf222e", "#0550ae", "#fff8c5", "#bf8700"
FONT, SMALL = 11, 10  #: points; never below 9 (the image is scaled down on phones)
_WORDS = (("S", "SYN"), ("F", "FIN"), ("R", "RST"), ("P", "PSH"), ("U", "URG"), ("E", "ECE"),
          ("W", "CWR"), (".", "ACK"))
_X_TIME, _X = 1.05, (1.9, 5.6)  # time labels' right edge; left and right lifelines
_SIDES = ("left", "right")
_ROW = {"packet": 0.44, "call": 0.3, "state": 0.36, "arrive": 0.16}
_TOP, _BOTTOM = 0.95, 0.5


def pyplot() -> Any:
    """matplotlib.pyplot, on Agg when there is no display and no backend was chosen.

    Figures go through pyplot (not a bare ``Figure``) because sphinx-gallery's
    scraper collects ``plt.get_fignums()`` and a reader running a script by hand
    may call ``plt.show()``.
    """
    import matplotlib

    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def card(height: float, alt: str) -> tuple[Figure, Axes]:
    """A WIDTH x `height` inch figure, one axes in inches (y down) on a light rounded card."""
    from matplotlib.patches import FancyBboxPatch

    fig = pyplot().figure(figsize=(WIDTH, height), facecolor="none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((0.04, 0.04), WIDTH - 0.08, height - 0.08, facecolor=CARD,
                                edgecolor=BORDER, linewidth=1.2, zorder=0, gid="card",
                                boxstyle="round,pad=0,rounding_size=0.14"))
    ax.set_title(alt, loc="left", visible=False)  # sphinx-gallery's :alt: text
    return fig, ax


def flag_words(flags: str) -> str:
    """tcpdump's flag letters in words: ``"S."`` -> ``"SYN-ACK"``, ``"P."`` -> ``"PSH-ACK"``."""
    return "-".join(word for letter, word in _WORDS if letter in flags) or "no flags"


def _sides(run: Observed) -> tuple[Endpoint, Endpoint] | None:
    """(left, right) endpoints: the SYN's sender first."""
    if run.packets:
        p = next((p for p in run.packets if p.flags == "S"), run.packets[0])
        swap = p.flags != "S" and _roles.endpoint_role(run, p.source) == "server"
        return (p.destination, p.source) if swap else (p.source, p.destination)
    for snap in run.snapshots:
        for row in snap.rows:
            if row.netid == "tcp" and row.state is not State.LISTEN and _roles.role(run, row) == "client":
                return row.local, row.peer
    return None


def _details(p: Packet) -> str:
    parts = []
    if p.length:
        parts.append(f"seq {p.seq}:{p.seq + p.length}")
    elif any(f in p.flags for f in "SFR"):
        parts.append(f"seq {p.seq}")
    if p.ack is not None:
        parts.append(f"ack {p.ack}")
    return " ".join(parts)


def _call_text(label: str, call: Call) -> str:
    """A call beside its lifeline: ``send #1 = 1``, ``send #2 = EPIPE``, or the label alone for None."""
    if not call.failed and call.value is None and call.kept:
        return label
    outcome = call.outcome
    if call.errno is None and call.exception is not None:  # http.client.RemoteDisconnected: its own name
        outcome = outcome.rsplit(".", 1)[-1]
    return f"{label} = {outcome if len(outcome) <= 18 else outcome[:17] + '…'}"


def events(run: Observed, emphasise: str | None = "R") -> tuple[tuple[Endpoint, Endpoint] | None, list[dict]]:
    """The ladder's rows, in time order: ``{"kind", "time_ns", ...}`` dicts (and the two endpoints)."""
    sides = _sides(run)
    if sides is None:
        return None, []
    rows: list[dict] = []
    reasons = reset_reasons(run)
    for p in run.packets:
        if {p.source, p.destination} == set(sides):
            lands = bool(p.fate) and p.arrived_ns is not None and p.fate != "injected"  # across a link
            rows.append({"kind": "packet", "time_ns": p.time_ns, "packet": p, "from": sides.index(p.source),
                         "emphasised": bool(emphasise) and all(f in p.flags for f in emphasise or ""),
                         "reason": reasons.get(p.index), "lands": lands})
            if lands:  # where it lands, with room for its reason
                rows.append({"kind": "arrive", "time_ns": p.arrived_ns, "packet": p,
                             "to": 1 - sides.index(p.source), "reason": reasons.get(p.index)})
    for j, c in enumerate(run.calls):
        local, peer = c.socket.local, c.socket.peer
        if local in sides and (peer is None or peer in sides or c.socket.listening):
            side = sides.index(local) if not c.socket.listening else 1
            who = _roles.actor(run, c)
            label = c.label if who in (None, _roles.endpoint_role(run, sides[side])) else f"{who}: {c.label}"
            rows.append({"kind": "call", "time_ns": c.time_ns, "index": j, "side": side,
                         "text": _call_text(label, c), "error": c.failed})
    rows += _state_rows(run, sides)
    rows.sort(key=lambda r: r["time_ns"])
    return sides, rows


def _state_rows(run: Observed, sides: tuple[Endpoint, Endpoint]) -> list[dict]:
    """Each side's state where it changed. With the kernel's events, every change at the moment
    the kernel made it (brief states included), each labelled "kernel"; the snapshots then only
    add where a socket is gone (CLOSED: a socket that becomes a timewait mini-socket records a
    change to CLOSE while the connection lives on, so the events' CLOSE is not drawn). Without
    events, the snapshots' states, labelled with the snapshot."""
    changes: list[tuple[int, int, str, str]] = []  # (time, side, state, label)
    side_roles = [_roles.endpoint_role(run, end) for end in sides]
    for e in run.kernel_events:
        if isinstance(e, StateChange) and e.new is not None and e.new is not State.CLOSE:
            where, other = _events.endpoint(e), _events.peer(e)
            # a side's own socket: its address, and the other side as its peer (not the listener,
            # which shares the server's address)
            side = sides.index(where) if where in sides and other == sides[1 - sides.index(where)] else (
                side_roles.index("client") if _events.before_its_port(e) and "client" in side_roles
                and other in sides else None)
            if side is not None:
                changes.append((e.time_ns, side, e.new.machine.rfc, "kernel"))
    seen: list[bool] = [False, False]
    for snap in run.snapshots:
        for side, (me, peer) in enumerate((sides, sides[::-1])):
            row = next((r for r in snap.rows if (r.local, r.peer) == (me, peer)), None)
            if row is not None:
                seen[side] = True
                if not run.kernel_events:
                    changes.append((snap.time_ns, side, row.state.rfc, snap.label))
            elif seen[side]:
                changes.append((snap.time_ns, side, State.CLOSE.rfc, snap.label))
    changes.sort(key=lambda c: c[0])
    rows: list[dict] = []
    shown: list[str | None] = [None, None]
    for time_ns, side, state, label in changes:
        if state == shown[side]:
            continue
        shown[side] = state
        if rows and rows[-1]["time_ns"] == time_ns and rows[-1]["label"] == label and not rows[-1]["states"][side]:
            rows[-1]["states"][side] = state
            continue
        states: list[str | None] = [None, None]
        states[side] = state
        rows.append({"kind": "state", "time_ns": time_ns, "states": states, "label": label})
    return rows


def reset_reasons(run: Observed) -> dict[int, str]:
    """{packet index: the kernel's reason} for each RST in the trace, matched to the kernel's
    ``tcp_send_reset`` event from the same address closest in time (each event used once).
    A reset the scenario forged (the scripted peer's) has no reason: no kernel sent it."""
    sent = [e for e in run.kernel_events if isinstance(e, ResetSent)]
    found: dict[int, str] = {}
    for p in run.packets:
        if "R" not in p.flags or p.fate == "injected":
            continue
        candidates = [e for e in sent if _events.endpoint(e) == p.source or (not e.sk and _events.peer(e) == p.source)]
        if candidates:
            best = min(candidates, key=lambda e: abs(e.time_ns - p.time_ns))
            sent.remove(best)
            found[p.index] = best.reason or "reason not recorded"
    return found


def ladder(run: Observed, *, emphasise: str | None = "R") -> Figure:
    """The run as a ladder diagram; packets whose flags include all of `emphasise` in red."""
    sides, rows = events(run, emphasise)
    roles = [_roles.endpoint_role(run, end) for end in sides] if sides else ["client", "server"]
    packets = [r for r in rows if r["kind"] == "packet"]
    other = len(run.packets) - len(packets)
    notes = [f"not to scale: one row per event; time from the first {'packet' if packets else 'event'}"]
    if not run.isolation.capture:
        notes.append(f"no packets: {run.isolation.reason or 'no capture'}")
    if other:
        notes.append(f"{other} packet(s) of other connections not shown")
    if run.kernel_events:
        notes.append("states and reset reasons from the kernel's own events")
    height = _TOP + sum(_height(r) for r in rows) + _BOTTOM + 0.2 * len(notes)
    fig, ax = card(height, ladder_alt(run, emphasise=emphasise))
    y_end = height - _BOTTOM - 0.2 * (len(notes) - 1)
    for side, x in enumerate(_X):
        ax.text(x, 0.36, roles[side], ha="center", va="center", fontsize=FONT + 1, weight="bold",
                color=INK, gid=f"role-{_SIDES[side]}")
        if sides:
            ax.text(x, 0.6, str(sides[side]), ha="center", va="center", fontsize=SMALL, color=MUTED)
        ax.plot([x, x], [0.78, y_end - 0.1], color=MUTED, lw=1.2, zorder=1,
                gid=f"lifeline-{_SIDES[side]}")
    if run.wire is not None:
        notes.append(f"two hosts, one-way delay {run.wire['delay'] * 1000:g} ms; an arrow spans the packet's "
                     "time on the link")
        height += 0.2
    t0 = packets[0]["time_ns"] if packets else (rows[0]["time_ns"] if rows else 0)
    y, counts = _TOP, {"left": 0, "right": 0}
    landing = {r["packet"].index: r for r in rows if r["kind"] == "arrive"}
    departed: dict[int, tuple[dict, float]] = {}
    for n, row in enumerate(rows):
        mid = y + _ROW[row["kind"]] / 2
        ms = (row["time_ns"] - t0) / 1e6
        ax.text(_X_TIME, mid, f"{ms:+.3f} ms" if abs(ms) < 1000 else f"{ms / 1000:+.3f} s", ha="right",
                va="center", fontsize=SMALL, color=MUTED, gid=f"time-{n}")
        if row["kind"] == "packet" and row["packet"].index in landing:
            departed[row["packet"].index] = (row, mid)  # drawn when its landing row is placed
        elif row["kind"] == "arrive":
            start_row, start_mid = departed.pop(row["packet"].index)
            _draw_packet(ax, start_row, start_mid, land=mid)
        elif row["kind"] == "packet":
            _draw_packet(ax, row, mid)
        elif row["kind"] == "call":
            x = _X[row["side"]]
            inward = 1 if row["side"] == 0 else -1
            ax.plot([x], [mid], "o", ms=5, color=INK, zorder=3, gid=f"call-{row['index']}-marker")
            ax.text(x + inward * 0.14, mid, row["text"], ha="left" if inward > 0 else "right", va="center",
                    fontsize=FONT, color=EMPHASIS if row["error"] else INK,
                    weight="bold" if row["error"] else "normal", gid=f"call-{row['index']}")
        else:
            if row["label"] != "kernel":
                ax.text(WIDTH / 2 + 0.2, mid, row["label"], ha="center", va="center", fontsize=SMALL,
                        color=MUTED, style="italic", gid=f"snapshot-{n}")
            for side, state in enumerate(row["states"]):
                if state:
                    key = _SIDES[side]
                    ax.text(_X[side], mid, state, ha="center", va="center", fontsize=SMALL, color=INK,
                            zorder=4, gid=f"state-{key}-{counts[key]}",
                            bbox={"boxstyle": "round,pad=0.3", "facecolor": STATE_FILL,
                                  "edgecolor": STATE_EDGE, "linewidth": 1})
                    counts[key] += 1
        y += _height(row)
    for i, note in enumerate(notes):
        ax.text(WIDTH / 2, height - _BOTTOM + 0.08 - 0.2 * (len(notes) - 1 - i), note, ha="center",
                va="center", fontsize=SMALL, color=MUTED, style="italic", gid=f"note-{i}")
    return fig


def _height(row: dict) -> float:
    """A row's height: an RST with the kernel's reason gets a line more, for the reason (on a link,
    the row where it lands), and a packet the link lost one more, for what became of it (written
    under its cross)."""
    lost = row["kind"] == "packet" and row["packet"].fate in ("dropped", "cut", "lost")
    reason = row.get("reason") and not row.get("lands")
    return _ROW[row["kind"]] + (0.2 if reason else 0.0) + (0.2 if lost else 0.0)


def _draw_packet(ax: Axes, row: dict, mid: float, land: float | None = None) -> None:
    """One packet's arrow: across its row, or (on a link) from its row down to where it `land`s;
    a packet the link lost ends halfway, crossed out."""
    from matplotlib.patches import FancyArrowPatch

    p: Packet = row["packet"]
    start, end = _X[row["from"]], _X[1 - row["from"]]
    y0, y1 = mid - 0.02, (mid + 0.16 if land is None else land)
    colour = EMPHASIS if row["emphasised"] else FIN_BLUE if "F" in p.flags else INK
    if p.fate == "injected":  # the scripted peer's: no host sent it
        ax.text(start, y0 - 0.04, "forged", ha="center", va="bottom", fontsize=SMALL, color=EMPHASIS,
                style="italic", gid=f"packet-{p.index}-forged")
    if p.fate in ("dropped", "cut", "lost"):
        end, y1 = (start + end) / 2, (y0 + y1) / 2 + 0.1
        ax.plot([end], [y1], marker="x", ms=11, mew=2.5, color=EMPHASIS, zorder=3, gid=f"packet-{p.index}-lost")
        ax.text(end, y1 + 0.1, {"dropped": "dropped by the link", "cut": "lost: link cut"}.get(p.fate, "lost"),
                ha="center", va="top", fontsize=SMALL, color=EMPHASIS, style="italic", gid=f"packet-{p.index}-fate")
    ax.add_patch(FancyArrowPatch((start, y0), (end, y1), arrowstyle="-|>" if p.fate not in (
                                     "dropped", "cut", "lost") else "-", mutation_scale=14 if
                                 row["emphasised"] else 11, lw=2.8 if row["emphasised"] else 1.3,
                                 color=colour, zorder=2, shrinkA=0, shrinkB=1, gid=f"packet-{p.index}"))
    words = flag_words(p.flags) + (f" {p.length} byte{'s' if p.length != 1 else ''}" if p.length else "")
    centre, text_y = (_X[0] + _X[1]) / 2, (y0 + (mid + 0.16)) / 2 - 0.07
    ax.text(centre - 0.06, text_y, words, ha="right", va="bottom", fontsize=FONT, color=colour,
            weight="bold", gid=f"packet-{p.index}-label")
    ax.text(centre + 0.06, text_y, _details(p), ha="left", va="bottom", fontsize=SMALL, color=MUTED,
            gid=f"packet-{p.index}-detail")
    if row.get("reason"):
        # under its arrow's end: in its own row, or on a link in the row where it lands (the room
        # _height gives either)
        ax.text(centre, y1 + 0.04, f"kernel's reason: {row['reason']}", ha="center", va="top", fontsize=SMALL,
                color=colour, style="italic", gid=f"packet-{p.index}-reason")


def ladder_alt(run: Observed, *, emphasise: str | None = "R") -> str:
    """The ladder in words, for the image's alt text."""
    sides, rows = events(run, emphasise)
    if sides is None:
        return f"Ladder diagram of {run.name}: no connection was recorded."
    roles = [_roles.endpoint_role(run, end) for end in sides]
    parts = []
    for row in rows:
        if row["kind"] == "packet":
            p = row["packet"]
            size = f" with {p.length} byte{'s' if p.length != 1 else ''}" if p.length else ""
            mark = " (emphasised)" if row["emphasised"] else ""
            why = f", the kernel's reason {row['reason']}" if row.get("reason") else ""
            fate = {"dropped": ", which the link drops", "cut": ", lost on the cut link",
                    "lost": ", still on the link at the end"}.get(p.fate, "")
            sender = (f"the scenario forges, as if from {roles[row['from']]},"
                      if p.fate == "injected" else f"{roles[row['from']]} sends")
            parts.append(f"{sender} {flag_words(p.flags)}{size}{mark}{why}{fate}")
        elif row["kind"] == "arrive":
            parts.append(f"the {flag_words(row['packet'].flags)} reaches {roles[row['to']]}")
        elif row["kind"] == "call":
            parts.append(f"{roles[row['side']]} {row['text']}")
        else:
            parts.append(" and ".join(f"{roles[i]} is {s}" for i, s in enumerate(row["states"]) if s))
    return (f"Ladder diagram of {run.name}, {roles[0]} on the left, {roles[1]} on the right: "
            + "; ".join(parts) + ".")
