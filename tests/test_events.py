"""The kernel's account of a run: whose each event is, resets and their reasons, paths; and the
views, claims and ladder that use them. From fixed records: no kernel involved."""

import socket

import pytest

from socklab import ClaimError, State
from socklab import _ladder as ladder_module
from socklab._kevents import ResetReceived, ResetSent, StateChange
from socklab._records import Counters, KernelEvents
from socklab._run import Run
from test_ladder import seed_run
from test_trace import SEED

T = [t for t, _ in SEED]  # SYN .. FIN at [3], its ACK at [4], data at [5], RST at [6]
LO = "127.0.0.1"


def change(t, sport, dport, old, new, sk=1):
    return StateChange(t, socket.AF_INET, LO, sport, LO, dport, sk, State[old], State[new])


#: The seed's central run as the kernel tells it (Linux 6.18): the client's socket becomes a
#: timewait mini-socket after close(), and that mini-socket answers the server's byte.
EVENTS = (
    change(T[0] - 5, 0, 4321, "CLOSE", "SYN_SENT"),
    change(T[1] - 1, 4321, 50000, "LISTEN", "SYN_RECV", sk=2),
    change(T[1] + 1, 50000, 4321, "SYN_SENT", "ESTABLISHED"),
    change(T[2] + 1, 4321, 50000, "SYN_RECV", "ESTABLISHED", sk=2),
    change(T[3] - 1, 50000, 4321, "ESTABLISHED", "FIN_WAIT1"),
    change(T[3] + 1, 4321, 50000, "ESTABLISHED", "CLOSE_WAIT", sk=2),
    change(T[4] + 1, 50000, 4321, "FIN_WAIT1", "FIN_WAIT2"),
    change(T[4] + 2, 50000, 4321, "FIN_WAIT2", "CLOSE"),
    ResetSent(T[6] - 1, socket.AF_INET, LO, 50000, LO, 4321, 9, State.TIME_WAIT, "TCP_TIMEWAIT_SOCKET"),
    ResetReceived(T[6] + 1, socket.AF_INET, LO, 4321, LO, 50000, 2, State.CLOSE_WAIT),
    change(T[6] + 2, 4321, 50000, "CLOSE_WAIT", "CLOSE", sk=2),
)


def with_events(events=EVENTS, **kernel):
    records = seed_run().records
    return Run("seed", [*records[:-1], KernelEvents(tuple(events), **kernel),
                        Counters((("TcpExtTCPAbortOnData", 0),)), records[-1]])


def test_each_event_belongs_to_the_role_of_its_socket_and_a_connecting_socket_to_the_client():
    run = with_events()
    assert run.resets() == [("client", "TCP_TIMEWAIT_SOCKET", State.TIME_WAIT)]
    from socklab import _events
    assert [_events.whose(run, e) for e in EVENTS[:2]] == ["client", "server"]


def test_a_connecting_socket_whose_syn_never_left_is_the_client_from_its_first_event():
    """connect() to an address whose neighbour lookup fails: no SYN on the wire, no listener."""
    events = (change(T[0], 0, 4321, "CLOSE", "SYN_SENT"), change(T[1], 50000, 4321, "SYN_SENT", "CLOSE"))
    records = seed_run().records
    run = Run("unreachable", [records[0], KernelEvents(events), records[-1]])
    from socklab import _events
    assert _events.states(run, "client") == [State.CLOSE, State.SYN_SENT, State.CLOSE]


def test_the_states_of_a_socket_include_the_brief_ones_no_snapshot_saw():
    from socklab import _events
    assert _events.states(with_events(), "client") == [State.CLOSE, State.SYN_SENT, State.ESTABLISHED,
                                                       State.FIN_WAIT1, State.FIN_WAIT2, State.CLOSE]


def test_a_path_ends_the_way_the_kernel_says_the_socket_ended():
    run = with_events()
    client = [(t.from_state, t.event, t.to_state) for t in run.path("client")]
    assert client[-1] == (State.FIN_WAIT2, "rcv data after close()", State.CLOSE)
    assert (State.FIN_WAIT1, "rcv ACK of FIN", State.FIN_WAIT2) in client
    server = [(t.event, t.to_state) for t in run.path("server")]
    assert server == [("rcv SYN", State.SYN_RECV), ("rcv ACK of SYN", State.ESTABLISHED),
                      ("rcv FIN", State.CLOSE_WAIT), ("rcv RST", State.CLOSE)]


def test_without_events_a_path_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="no kernel events .* give state_path"):
        seed_run().path("client")


def test_reset_claims_name_who_and_why_and_fail_with_the_kernels_words():
    run = with_events()
    run.expect(resets=[("client", "TCP_TIMEWAIT_SOCKET")], transitions={"server": [
        "LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"]}, counters={"TcpExtTCPAbortOnData": 0})
    run.expect(resets=[("client", "")])  # any reason
    with pytest.raises(ClaimError, match=r"resets: the page says client: TCP_ABORT_ON_DATA; the kernel says "
                                         r"client: TCP_TIMEWAIT_SOCKET \(happen on the timewait socket; sent by a "
                                         r"socket in TCP_TIME_WAIT\)"):
        run.expect(resets=[("client", "TCP_ABORT_ON_DATA")])
    with pytest.raises(ClaimError, match=r"transitions of client: the page says TCP_ESTABLISHED -> TCP_FIN_WAIT2"):
        run.expect(transitions={"client": ["ESTABLISHED", "FIN_WAIT2"]})
    with pytest.raises(ClaimError, match=r"counter TcpExtTCPAbortOnData: the page says \+1"):
        run.expect(counters={"TcpExtTCPAbortOnData": 1})


CLIENT_PATH = ["CLOSE", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"]
SERVER_PATH = ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "CLOSE"]


def test_a_complete_record_proves_no_event_lost():
    from socklab import _events
    assert _events.lost(with_events()) == {}
    later = max(snap.time_ns for snap in with_events().snapshots) + 1
    reused = (*EVENTS, change(later, 0, 4321, "CLOSE", "SYN_SENT"))  # a new socket at the client's address
    assert _events.lost(with_events(reused)) == {}


def lose(sk, new):
    return with_events([e for e in EVENTS if not (isinstance(e, StateChange) and e.sk == sk and e.new is State[new])])


def test_a_break_in_a_sockets_chain_of_changes_is_shown_as_a_lost_event():
    """The kernel's known limit (_kernel): one FIN_WAIT1 -> FIN_WAIT2 in about a thousand runs is not
    recorded. The path still has FIN_WAIT2 (the next change starts there), so the claim holds."""
    from socklab import _events
    run = lose(1, "FIN_WAIT2")
    assert list(_events.lost(run)) == ["client"]
    assert "the change from TCP_FIN_WAIT1 to TCP_FIN_WAIT2 was not recorded" in _events.lost(run)["client"][0]
    assert "WARNING: an event of the client's socket was lost in this run" in str(run.events())
    run.expect(transitions={"client": CLIENT_PATH})
    assert run.unchecked == []


def test_a_socket_is_found_in_snapshots_by_its_addresses_not_by_a_roles_name():
    """A socket the page named (lab.name), or one no snapshot ever showed, proves nothing lost."""
    from socklab import _events
    from socklab._records import Named
    from socklab._vocab import Endpoint
    named = with_events(lose(1, "CLOSE").kernel_events)
    client = Endpoint(socket.AF_INET, LO, 50000)
    named.records.insert(1, Named("A", 0, client, Endpoint(socket.AF_INET, LO, 4321)))
    named = Run("seed", named.records)
    assert list(_events.lost(named)) == ["A"]  # found by its addresses, named as claims name it
    elsewhere = (change(T[0], 1234, 80, "CLOSE", "SYN_SENT", sk=7), change(T[1], 1234, 80, "SYN_SENT", "ESTABLISHED",
                                                                           sk=7))
    assert _events.lost(with_events((*EVENTS, *elsewhere))) == {}  # never in a table: no proof either way


def test_a_socket_gone_from_a_snapshot_without_a_recorded_close_makes_its_claim_unchecked_not_broken(capsys):
    from socklab import _events
    run = lose(2, "CLOSE")
    assert "the snapshot 'after send' no longer shows it" in _events.lost(run)["server"][0]
    run.expect(transitions={"server": SERVER_PATH, "client": CLIENT_PATH})
    assert len(run.unchecked) == 1 and "transitions of server" in run.unchecked[0]
    assert "record of them is incomplete" in run.unchecked[0] and "UNCHECKED" in capsys.readouterr().err
    with pytest.raises(ClaimError, match="transitions of client"):  # the client's record is whole: checked
        run.expect(transitions={"client": CLIENT_PATH[:-1]})


def test_event_claims_without_events_are_unchecked_and_said(capsys):
    run = with_events((), unavailable="kernel events need root (bpf and tracefs)", fix="run as root")
    run.expect(resets=[("client", "TCP_TIMEWAIT_SOCKET")], transitions={"client": ["ESTABLISHED"]})
    assert len(run.unchecked) == 2 and "kernel events need root" in run.unchecked[0]
    assert "UNCHECKED" in capsys.readouterr().err
    assert "no kernel events: kernel events need root (bpf and tracefs). Fix: run as root" in str(run.about())


def test_a_kernel_without_reasons_leaves_reason_claims_unchecked_but_checks_who():
    no_reason = tuple(ResetSent(e.time_ns, e.family, e.saddr, e.sport, e.daddr, e.dport, e.sk, e.state, "")
                      if isinstance(e, ResetSent) else e for e in EVENTS)
    run = with_events(no_reason, missing=(("reset reasons", "no reason field before Linux 6.10"),))
    run.expect(resets=[("client", "TCP_TIMEWAIT_SOCKET")])
    assert "no reason field" in run.unchecked[0]
    with pytest.raises(ClaimError, match="resets: the page says server"):
        run.expect(resets=[("server", "TCP_TIMEWAIT_SOCKET")])


def test_the_events_table_quotes_the_kernels_names_and_the_timeline_merges_everything():
    run = with_events()
    events = str(run.events())
    assert "client  sent RST by a socket in TCP_TIME_WAIT: TCP_TIMEWAIT_SOCKET" in events
    assert "state TCP_FIN_WAIT1 -> TCP_FIN_WAIT2" in events
    assert 'class="socklab sl-kernel"' in run.events()._repr_html_()
    lines = str(run.timeline()).splitlines()
    assert any("sends Flags [R], seq 2" in line for line in lines)
    rst = next(i for i, line in enumerate(lines) if "sends Flags [R]" in line)
    reason = next(i for i, line in enumerate(lines) if "TCP_TIMEWAIT_SOCKET" in line)
    assert abs(rst - reason) == 1  # the reset and the kernel's reason side by side


def test_the_ladder_labels_each_reset_with_the_kernels_reason_and_draws_brief_states():
    run = with_events()
    assert ladder_module.reset_reasons(run) == {6: "TCP_TIMEWAIT_SOCKET"}
    fig = ladder_module.ladder(run)
    texts = {a.get_gid(): a.get_text() for a in fig.findobj(lambda a: (a.get_gid() or "").startswith(
        ("packet-6-reason", "state-left")))}
    assert texts["packet-6-reason"] == "kernel's reason: TCP_TIMEWAIT_SOCKET"
    assert [texts[g] for g in sorted(g for g in texts if g.startswith("state-left"))] == [
        "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSED"]
    assert "client sends RST (emphasised), the kernel's reason TCP_TIMEWAIT_SOCKET" in ladder_module.ladder_alt(run)
    ladder_module.pyplot().close("all")


def test_a_socket_its_own_kernel_aborted_is_not_said_to_have_taken_an_rst():
    from socklab import _events
    aborted = ResetReceived(T[6] - 20_000, socket.AF_INET, LO, 50000, LO, 4321, 1, State.FIN_WAIT2)
    sent = ResetSent(T[6] - 3_000, socket.AF_INET, LO, 50000, LO, 4321, 1, State.CLOSE, "TCP_ABORT_ON_DATA")
    taken = ResetReceived(T[6] + 1, socket.AF_INET, LO, 4321, LO, 50000, 2, State.CLOSE_WAIT)
    run = with_events(EVENTS[:7] + (aborted, sent, taken))
    assert _events.describe(run, aborted) == ("aborted by its own kernel in TCP_FIN_WAIT2 (tcp_reset), "
                                              "then sent the RST: no RST arrived")
    assert _events.describe(run, taken) == "reset taken in TCP_CLOSE_WAIT (tcp_reset)"
