"""The state diagram drawn from the transitions table."""

import io

import pytest

from socklab import _statediagram, _tcp
from socklab._ladder import pyplot


@pytest.fixture(autouse=True)
def close_figures():
    yield
    pyplot().close("all")


def drawn(fig):
    return {a.get_gid(): a for a in fig.findobj(lambda a: a.get_gid() is not None)}


def test_diagram_draws_each_state_and_the_shown_transitions_only():
    artists = drawn(_statediagram.draw_state_diagram())
    assert {g.removeprefix("state-") for g in artists if g.startswith("state-")} == set(_tcp.STATES)
    arrows = {g for g in artists if g.startswith("transition-")}
    assert arrows == {f"transition-{t.from_state}-{t.event}-{t.to_state}" for t in _tcp.TRANSITIONS if t.shown}


def test_diagram_highlights_a_path_including_omitted_transitions():
    client = _tcp.path(["ESTABLISHED", "FIN_WAIT2", "rcv data after close()"])
    artists = drawn(_statediagram.draw_state_diagram({"client": client}))
    on_path = {f"transition-{t.from_state}-{t.event}-{t.to_state}" for t in client}
    assert on_path <= set(artists)
    widths = {g: a.get_linewidth() for g, a in artists.items() if g.startswith("transition-")}
    assert min(widths[g] for g in on_path) > max(w for g, w in widths.items() if g not in on_path)
    assert artists["transition-FIN_WAIT2-rcv data after close()-CLOSED"].get_linestyle() != "-"


def test_diagram_alt_text_names_the_highlighted_path():
    fig = _statediagram.draw_state_diagram(_tcp.path(["ESTABLISHED", "FIN_WAIT2"]))
    assert fig.axes[0].get_title(loc="left") == (
        "TCP state diagram after RFC 9293 Figure 5. highlighted: close() from ESTABLISHED to FIN_WAIT1 "
        "then rcv ACK of FIN from FIN_WAIT1 to FIN_WAIT2.")
    fig.savefig(io.BytesIO(), format="png")  # renders without warnings (they are errors here)


def test_diagram_refuses_transitions_not_in_the_table():
    with pytest.raises(ValueError, match="not a row of socklab._tcp.TRANSITIONS"):
        _statediagram.draw_state_diagram([_tcp.Transition("ESTABLISHED", "magic", "CLOSED")])
