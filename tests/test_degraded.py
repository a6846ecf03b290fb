"""What a run shows, and says, where this machine cannot do or see all a page needs."""

from __future__ import annotations

import os
import socket

import pytest

import scenarios
import socklab
from builders import row, seed_run
from socklab import _netns
from socklab._records import Finished, Ports, Snapshot, Started
from socklab._run import Run
from test_trace import SEED

FIN_TIMEOUT = "net.ipv4.tcp_fin_timeout"


def host_fin_timeout() -> str:
    with open("/proc/sys/net/ipv4/tcp_fin_timeout") as f:
        return f.read().strip()


@pytest.fixture
def refused_namespaces(monkeypatch):
    """A kernel that refuses namespaces (seccomp, AppArmor): unshare fails with EPERM."""

    def refuse(flags):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_netns, "unshare", refuse)
    monkeypatch.setattr(_netns, "_probe_cache", None)
    yield
    _netns._probe_cache = None


def uncaptured_run() -> Run:
    """The seed's run as a machine without capture records it: tables and calls, no frames."""
    captured = seed_run(SEED)
    records = [Started("6.18.0", "none", False, "packet capture refused (for a test)", "run as root", 0),
               *[r for r in captured.records if not isinstance(r, Started)]]
    return Run("seed", [r for r in records if type(r).__name__ != "Frames"])


# -- claims checked with plain code ---------------------------------------------------

def test_a_claim_on_packets_a_run_did_not_capture_is_unchecked_not_passed(capsys):
    run = uncaptured_run()
    assert run.packets == [] and "packets" in str(run.trace())  # the views still show what there is
    with run.claim("no reset is sent"):
        assert "R" not in "".join(p.flags for p in run.packets)  # on no packets, this would pass
    with run.claim("the client's first packet is a SYN"):
        assert run.flow()[0] == "client [S]"
    assert len(run.unchecked) == 2 and all("no packet capture" in u for u in run.unchecked)
    assert "no reset is sent" in run.unchecked[0] and "UNCHECKED" in capsys.readouterr().err
    assert "no reset is sent" in str(run.about())


def test_a_claim_on_captured_packets_is_checked():
    run = seed_run(SEED)
    with run.claim("the client resets last"):
        assert run.flow()[-1] == "client [R]"
    with pytest.raises(socklab.ClaimError, match="no reset is sent"), run.claim("no reset is sent"):
        assert "R" not in "".join(p.flags for p in run.packets)
    assert run.unchecked == []


def test_a_claim_the_kernel_contradicts_names_itself():
    run = uncaptured_run()  # who made a call comes from the tables: no capture needed to check it
    broke = pytest.raises(socklab.ClaimError, match=r"'seed'.*the server's second send succeeds.*EPIPE")
    with broke, run.claim("the server's second send succeeds"):
        assert run.call("server: send #2").errno is None, run.call("server: send #2").errno
    assert run.unchecked == []


def test_a_missing_label_is_an_error_of_the_page_in_a_run_that_ran_to_its_end():
    run = uncaptured_run()
    with pytest.raises(KeyError, match="no snapshot labelled"), run.claim("a typo stays a typo"):
        run.snapshot("aftre close")


def test_a_state_claim_names_the_pages_port_where_the_run_used_another():
    used = row("LISTEN", "127.0.0.1:40000", "0.0.0.0:*")
    run = Run("moved", [Started("6.18.0", "none", False, "no namespace (a test)", "", 0),
                        Snapshot("listening", 1, (used,)), Ports(((4321, 40000),), (40000,)), Finished(2)])
    run.expect(states={"listening": {"listener": {"state": "LISTEN", "local": "127.0.0.1:4321"}}})
    with pytest.raises(socklab.ClaimError, match="local 127.0.0.1:40001"):
        run.expect(states={"listening": {"listener": {"local": "127.0.0.1:40001"}}})


# -- settings of the run's own namespace ----------------------------------------------

def stops_for_a_setting(lab):
    listener = socket.socket()
    listener.bind(("127.0.0.1", scenarios.PORT))
    listener.listen(1)
    lab.snapshot("listening")
    lab.sysctl(FIN_TIMEOUT, int(host_fin_timeout()) + 1)
    lab.snapshot("with the setting")
    lab.call(listener.close, label="close")


def test_a_setting_the_host_would_need_stops_the_scenario_there_loudly(refused_namespaces, capsys):
    host = host_fin_timeout()
    run = socklab.run(stops_for_a_setting)
    assert host_fin_timeout() == host  # never written
    assert FIN_TIMEOUT in run.stopped and "own network namespace" in run.stopped
    assert [s.label for s in run.snapshots] == ["listening"]
    assert any(n.startswith("WARNING: the page sets net.ipv4.tcp_fin_timeout") and "never writes" in n
               and "Fix:" in n for n in run.notes)
    run.expect(states={"listening": {"listener": "LISTEN"}, "with the setting": {"listener": "LISTEN"}},
               calls={"listener: close": None}, values={FIN_TIMEOUT: str(int(host) + 1)},
               flow=["client [S]"])
    with run.claim("the listener closed without an error"):
        assert run.call("listener: close").errno is None
    assert len(run.unchecked) == 5, run.unchecked
    assert all("stopped" in u or "not set" in u or "host's" in u for u in run.unchecked), run.unchecked
    assert "UNCHECKED" in capsys.readouterr().err


def test_a_setting_the_run_can_do_without_lets_it_go_on_with_the_hosts(refused_namespaces):
    host = host_fin_timeout()

    def goes_on(lab):
        lab.sysctl(FIN_TIMEOUT, int(host) + 1, required=False)
        lab.snapshot("went on")

    run = socklab.run(goes_on)
    assert host_fin_timeout() == host and run.stopped == ""
    assert [s.label for s in run.snapshots] == ["went on"]
    assert isinstance(run.values[FIN_TIMEOUT], socklab._degraded.NotSet)
    run.expect(values={FIN_TIMEOUT: str(int(host) + 1)})
    with run.claim("the setting is one more than the host's"):
        assert int(run.value(FIN_TIMEOUT)) == int(host) + 1
    assert len(run.unchecked) == 2 and all("the host's" in u for u in run.unchecked), run.unchecked


def test_a_setting_of_the_runs_own_namespace_is_written_and_recorded():
    if not _netns.probe().private:
        pytest.skip("no private network namespace here: " + _netns.probe().reason)
    host = host_fin_timeout()

    def sets_twice(lab):
        lab.sysctl(FIN_TIMEOUT, 7)
        lab.sysctl(FIN_TIMEOUT, 8)
        lab.sysctl("net.ipv4.tcp_tw_reuse")

    run = socklab.run(sets_twice)
    assert host_fin_timeout() == host
    # "before" is the namespace's own value, before the scenario changed it
    run.expect(values={f"{FIN_TIMEOUT} before": "60", FIN_TIMEOUT: "8", "net.ipv4.tcp_tw_reuse": "2"})
    assert run.unchecked == [] and run.stopped == ""
    assert os.path.exists("/proc/sys/net/ipv4/tcp_fin_timeout")


def test_a_claim_on_the_whole_socket_table_is_unchecked_where_the_host_shares_it():
    """netstat on the host shows every program's sockets on the page's port: there, neither a
    row too many nor the right rows is the run's to claim."""
    host = uncaptured_run()  # mode "none": the host's namespace
    for rows in (["the run's own"], ["the run's own", "another program's"]):
        with host.claim("netstat shows one row", private=True):
            assert len(rows) == 1, rows
    assert len(host.unchecked) == 2 and all("own network namespace" in u for u in host.unchecked)
    isolated = seed_run(SEED)
    with pytest.raises(socklab.ClaimError, match="netstat shows one row"), isolated.claim("netstat shows one row",
                                                                                           private=True):
        assert len(["the run's own", "another program's"]) == 1
