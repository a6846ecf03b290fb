"""The TCP state machine table (RFC 9293) and path()."""

import pytest

from socklab import State, _tcp


def rows(transitions):
    return [(t.from_state, t.event, t.to_state) for t in transitions]


def edge(a, event, b):
    """A row as the tests write it: states in any spelling."""
    return State.parse(a).machine, event, State.parse(b).machine


# RFC 9293 section 3.3.2, Figure 5, edge by edge (the SEND and SYN-RECEIVED CLOSE edges included).
FIGURE_5 = [
    ("CLOSED", "listen()", "LISTEN"), ("CLOSED", "connect()", "SYN_SENT"),
    ("LISTEN", "rcv SYN", "SYN_RECV"), ("LISTEN", "close()", "CLOSED"), ("LISTEN", "send()", "SYN_SENT"),
    ("SYN_SENT", "rcv SYN-ACK", "ESTABLISHED"), ("SYN_SENT", "rcv SYN", "SYN_RECV"),
    ("SYN_SENT", "close()", "CLOSED"), ("SYN_RECV", "rcv ACK of SYN", "ESTABLISHED"),
    ("SYN_RECV", "rcv RST", "LISTEN"), ("SYN_RECV", "close()", "FIN_WAIT1"),
    ("ESTABLISHED", "close()", "FIN_WAIT1"), ("ESTABLISHED", "rcv FIN", "CLOSE_WAIT"),
    ("FIN_WAIT1", "rcv ACK of FIN", "FIN_WAIT2"), ("FIN_WAIT1", "rcv FIN", "CLOSING"),
    ("FIN_WAIT2", "rcv FIN", "TIME_WAIT"), ("CLOSING", "rcv ACK of FIN", "TIME_WAIT"),
    ("CLOSE_WAIT", "close()", "LAST_ACK"), ("LAST_ACK", "rcv ACK of FIN", "CLOSED"),
    ("TIME_WAIT", "timeout 2MSL", "CLOSED"),
]


def test_table_holds_every_transition_of_figure_5():
    table = rows(_tcp.TRANSITIONS)
    assert [e for e in FIGURE_5 if edge(*e) not in table] == []
    assert len(set(table)) == len(table), "a transition is listed twice"


def test_table_holds_what_figure_5_notes_add():
    table = rows(_tcp.TRANSITIONS)
    assert edge("FIN_WAIT1", "rcv FIN + ACK of FIN", "TIME_WAIT") in table  # note 2
    for state in ("ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "CLOSING", "LAST_ACK"):
        assert edge(state, "rcv RST", "CLOSED") in table  # note 3, section 3.10.7.4
    assert edge("ESTABLISHED", "close() with SO_LINGER 0", "CLOSED") in table  # ABORT, section 3.10.5
    assert edge("FIN_WAIT2", "rcv data after close()", "CLOSED") in table  # section 3.6.1


def test_every_transition_quotes_its_source():
    assert {t.source for t in _tcp.TRANSITIONS} <= set(_tcp.QUOTES)
    assert "local FIN is also acknowledged" in _tcp.QUOTES[_tcp.transition(
        "FIN_WAIT1", "rcv FIN + ACK of FIN").source]


def test_states_are_rfc_9293s_machine_without_the_request_socket():
    table = {s for t in _tcp.TRANSITIONS for s in (t.from_state, t.to_state)}
    assert table == set(_tcp.STATES) == set(State) - {State.NEW_SYN_RECV}


@pytest.mark.parametrize("spelling", ["CLOSED", "CLOSE", "UNCONN", "TCP_CLOSE"])
def test_rows_may_be_written_in_any_spelling_and_store_the_state(spelling):
    assert _tcp.Transition("LISTEN", "close()", spelling).to_state is State.CLOSE
    assert str(_tcp.Transition("ESTAB", "close()", "FIN_WAIT1")) == "ESTABLISHED --close()--> FIN-WAIT-1"


def test_path_follows_an_active_close_state_by_state():
    steps = _tcp.path(["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"])
    assert rows(steps) == [edge("ESTABLISHED", "close()", "FIN_WAIT1"),
                           edge("FIN_WAIT1", "rcv ACK of FIN", "FIN_WAIT2"),
                           edge("FIN_WAIT2", "rcv FIN", "TIME_WAIT")]


def test_path_fills_in_states_the_snapshots_missed():
    assert [t.event for t in _tcp.path(["ESTABLISHED", "FIN_WAIT2"])] == ["close()", "rcv ACK of FIN"]


def test_path_of_a_passive_close_ends_in_closed():
    assert [t.to_state for t in _tcp.path(["ESTAB", "CLOSE-WAIT", "CLOSE"])] == [
        State.CLOSE_WAIT, State.LAST_ACK, State.CLOSE]


def test_path_prefers_the_transitions_figure_5_draws():
    assert [t.to_state for t in _tcp.path(["FIN_WAIT1", "TIME_WAIT"])] == [State.FIN_WAIT2, State.TIME_WAIT]


def test_path_never_goes_through_closed():
    with pytest.raises(ValueError, match="no path from TIME-WAIT to SYN-SENT"):
        _tcp.path(["TIME_WAIT", "SYN_SENT"])  # that would be a new connection
    assert [t.event for t in _tcp.path(["CLOSED", "ESTABLISHED"])] == ["connect()", "rcv SYN-ACK"]


def test_an_event_in_the_path_picks_the_transition():
    steps = _tcp.path(["ESTABLISHED", "CLOSE_WAIT", "rcv RST", "CLOSED"])
    assert rows(steps) == [edge("ESTABLISHED", "rcv FIN", "CLOSE_WAIT"), edge("CLOSE_WAIT", "rcv RST", "CLOSED")]
    assert _tcp.path(["FIN_WAIT2", "rcv data after close()"])[0].action == "snd RST"


def test_repeated_observations_of_one_state_are_no_transition():
    assert _tcp.path(["ESTABLISHED", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT1"]) == [
        _tcp.transition("ESTABLISHED", "close()")]


def test_unknown_state_raises_and_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown TCP state 'FIN_WAIT3'; the states are ESTABLISHED, SYN-SENT") as e:
        _tcp.path(["ESTABLISHED", "FIN_WAIT3"])
    assert "FIN-WAIT-2" in str(e.value) and "rcv RST" in str(e.value)


def test_unreachable_state_raises():
    with pytest.raises(ValueError, match="no path from ESTABLISHED to LISTEN"):
        _tcp.path(["ESTABLISHED", "LISTEN"])


def test_event_that_cannot_happen_in_a_state_raises_with_the_possible_ones():
    with pytest.raises(ValueError, match=r"no transition for 'rcv FIN' in LISTEN; events there: 'rcv SYN'"):
        _tcp.path(["LISTEN", "rcv FIN"])
    with pytest.raises(ValueError, match="start with a state"):
        _tcp.path(["rcv RST", "CLOSED"])
