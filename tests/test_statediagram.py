"""The state diagram drawn from the transitions table."""

import ast
import contextlib
import io
import itertools
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox

from socklab import _statediagram, _tcp
from socklab._ladder import pyplot


@pytest.fixture(autouse=True)
def close_figures():
    yield
    pyplot().close("all")


def gid(t):
    return f"transition-{t.from_state.name}-{t.event}-{t.to_state.name}"


def drawn(fig):
    return {a.get_gid(): a for a in fig.findobj(lambda a: a.get_gid() is not None)}


def test_diagram_draws_each_state_and_the_shown_transitions_only():
    artists = drawn(_statediagram.draw_state_diagram())
    assert {g.removeprefix("state-") for g in artists if g.startswith("state-")} == {
        s.name for s in _tcp.STATES} | {"CLOSE-end"}
    assert {a.get_text() for g, a in artists.items() if g.startswith("name-")} == {s.rfc for s in _tcp.STATES}
    arrows = {g for g in artists if g.startswith("transition-")}
    assert arrows == {gid(t) for t in _tcp.TRANSITIONS if t.shown}


def test_diagram_highlights_a_path_including_omitted_transitions():
    client = _tcp.path(["ESTABLISHED", "FIN_WAIT2", "rcv data after close()"])
    artists = drawn(_statediagram.draw_state_diagram({"client": client}))
    on_path = {gid(t) for t in client}
    assert on_path <= set(artists)
    widths = {g: a.get_linewidth() for g, a in artists.items() if g.startswith("transition-")}
    assert min(widths[g] for g in on_path) > max(w for g, w in widths.items() if g not in on_path)
    assert artists["transition-FIN_WAIT2-rcv data after close()-CLOSE"].get_linestyle() != "-"


def test_diagram_alt_text_names_the_highlighted_path():
    fig = _statediagram.draw_state_diagram(_tcp.path(["ESTABLISHED", "FIN_WAIT2"]))
    assert fig.axes[0].get_title(loc="left") == (
        "TCP state diagram after RFC 9293 Figure 5. highlighted: close() from ESTABLISHED to FIN-WAIT-1 "
        "then rcv ACK of FIN from FIN-WAIT-1 to FIN-WAIT-2.")
    fig.savefig(io.BytesIO(), format="png")  # renders without warnings (they are errors here)


def test_diagram_refuses_transitions_not_in_the_table():
    with pytest.raises(ValueError, match="not a row of socklab._tcp.TRANSITIONS"):
        _statediagram.draw_state_diagram([_tcp.Transition("ESTABLISHED", "magic", "CLOSED")])


# --- no label overlaps another, on any page ------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def page_highlights() -> list[tuple[str, dict[str, list[str]]]]:
    """Each ``{role: state_path(...)}`` of the example pages (what their state diagrams highlight
    without the kernel's events), as (page, {role: the list given to state_path}), the lists read
    from the page's source."""
    found = []
    for page in sorted(EXAMPLES.glob("*/*.py")):
        tree = ast.parse(page.read_text())
        names = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                with contextlib.suppress(ValueError):
                    names[node.targets[0].id] = ast.literal_eval(node.value)
        for node in ast.walk(tree):  # every {role: state_path(...)} of the page, given to the diagram
            if not (isinstance(node, ast.Dict) and node.values and all(
                    isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "state_path"
                    for v in node.values)):
                continue
            highlight = {}
            for key, value in zip(node.keys, node.values, strict=True):
                given = value.args[0]
                path = names[given.id] if isinstance(given, ast.Name) else ast.literal_eval(given)
                highlight[ast.literal_eval(key)] = path
            found.append((f"{page.parent.name}/{page.name}", highlight))
    return found


PAGES = page_highlights()


def text_boxes(fig) -> list[tuple[str, Bbox]]:
    """Every text's box as drawn on the Agg canvas (a label with its background), and every state's."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    boxes = []
    for text in ax.texts + (ax.get_legend().get_texts() if ax.get_legend() else []):
        if text.get_visible() and text.get_text():
            patch = text.get_bbox_patch()
            box = (patch or text).get_window_extent(renderer)
            boxes.append((text.get_gid() or f"text {text.get_text()!r}", box))
    boxes += [(p.get_gid(), p.get_window_extent(renderer)) for p in ax.patches
              if (p.get_gid() or "").startswith("state-")]
    return boxes


def overlaps(fig, pad: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of boxes closer than 2 * `pad` pixels, but for a state's name in its own box."""
    boxes = text_boxes(fig)
    return [(a, b) for (a, x), (b, y) in itertools.combinations(boxes, 2)
            if x.padded(pad).overlaps(y.padded(pad))
            and not ({a.split("-", 1)[0], b.split("-", 1)[0]} == {"name", "state"}
                     and a.split("-", 1)[1] == b.split("-", 1)[1])]


def test_the_pages_draw_state_diagrams():
    pages = {page for page, _ in PAGES}
    assert {"02_close/01_close_then_send.py", "03_reset/01_linger_zero.py"} <= pages, pages


@pytest.mark.parametrize("highlight", [h for _, h in PAGES], ids=[page for page, _ in PAGES])
def test_no_label_overlaps_another_on_a_page(highlight):
    fig = _statediagram.draw_state_diagram({role: _tcp.path(p) for role, p in highlight.items()})
    assert overlaps(fig) == []


@pytest.mark.parametrize("row", [t for t in _tcp.TRANSITIONS if not t.shown], ids=str)
def test_no_label_overlaps_another_for_any_dashed_row(row):
    assert overlaps(_statediagram.draw_state_diagram({"path": [row]})) == []


def test_the_overlap_check_sees_an_overlap():
    fig = _statediagram.draw_state_diagram()
    ax = fig.axes[0]
    ax.texts[-1].set_position(ax.texts[-2].get_position())  # one label onto another
    assert overlaps(fig)
