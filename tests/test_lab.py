"""run(): isolation, capture, faults, repetition, as root and unprivileged."""

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

import scenarios
import socklab
from socklab import _netns


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


def assert_no_children():
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_seed_scenario_sends_once_then_gets_epipe():
    run = socklab.run(scenarios.close_then_send)
    assert [c.outcome for c in run.calls] == ["None", "1", "EPIPE"]
    assert run.flow() == scenarios.SEED_FLOW
    # the RST comes from the client, after the server's data
    assert run.flow().index("client [R]") > run.flow().index("server [P.]")


def test_seed_scenario_states_match_the_seed_netstat():
    run = socklab.run(scenarios.close_then_send)
    after_close = run.states_at("after close on client")
    assert (after_close["client"].state, after_close["server"].state) == ("FIN_WAIT2", "CLOSE_WAIT")
    assert after_close["server"].recv_q == 1
    assert set(run.states_at("after send on server")) == {"listener"}


HOST_CHATTER = textwrap.dedent("""
    import socket, sys
    host = socket.socket()
    host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host.bind(("127.0.0.1", 4321))
    host.listen(64)
    n = 0
    while True:
        with socket.create_connection(("127.0.0.1", 4321)) as c:
            s, _ = host.accept()
            with s:
                c.sendall(b"host traffic")
                s.recv(100)
        n += 1
        if n in (5, 50, 500):
            print(n, flush=True)
""")


def test_run_is_isolated_from_host_traffic_on_the_same_ports():
    """A separate process keeps 127.0.0.1:4321 busy on the host; the scenario sees none of it."""
    if not _netns.probe().private:
        pytest.fail("this machine refuses network namespaces; isolation cannot be tested")
    chatter = subprocess.Popen([sys.executable, "-c", HOST_CHATTER], stdout=subprocess.PIPE, text=True)
    try:
        assert chatter.stdout.readline().strip() == "5"  # the host is busy on the port now
        runs = [socklab.run(scenarios.close_then_send) for _ in range(5)]
        assert chatter.poll() is None, "the host traffic stopped during the runs"
    finally:
        chatter.kill()
        chatter.wait()
        chatter.stdout.close()
    for run in runs:
        assert run.flow() == scenarios.SEED_FLOW
        assert {p.sport for p in run.packets} | {p.dport for p in run.packets} == {4321, 50000}
        assert all(b"host traffic" not in p.payload for p in run.packets)
        assert all(len(s.rows) <= 3 for s in run.snapshots)


def test_repeated_runs_print_the_same_trace_but_for_times():
    texts, outcomes = set(), set()
    for _ in range(50):
        run = socklab.run(scenarios.close_then_send)
        texts.add("\n".join(p.line(0).split(" ", 2)[-1] for p in run.packets))
        outcomes.add(tuple(c.outcome for c in run.calls))
    assert len(texts) == 1, texts
    assert outcomes == {("None", "1", "EPIPE")}


def test_exception_in_scenario_is_raised_with_the_child_traceback():
    def broken(lab):
        lab.snapshot("start")
        raise ValueError("boom in the scenario")

    with pytest.raises(socklab.ScenarioError, match="raised ValueError: boom") as info:
        socklab.run(broken)
    assert "in broken" in str(info.value)
    assert_no_children()


def test_hanging_scenario_is_killed_after_the_timeout_and_nothing_is_left():
    def hangs(lab):
        lab.snapshot("about to hang")
        select.select([], [], [])

    before = open_fds()
    with pytest.raises(socklab.ScenarioTimeout, match="within 0.5s.*about to hang"):
        socklab.run(hangs, timeout=0.5)
    assert open_fds() == before
    assert_no_children()


def test_default_timeout_is_at_most_ten_seconds():
    import inspect
    assert inspect.signature(socklab.run).parameters["timeout"].default <= 10


def sigpipe_death(lab):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    r, w = os.pipe()
    os.close(r)
    lab.call(os.write, w, b"a", label="write to a pipe nobody reads")


def test_death_by_sigpipe_is_reported_as_such():
    with pytest.raises(socklab.ScenarioKilled, match="killed by SIGPIPE during: write to a pipe"):
        socklab.run(sigpipe_death)
    assert_no_children()


def test_death_by_sigpipe_can_be_the_point_of_the_page():
    run = socklab.run(sigpipe_death, allow_signals=True)
    assert run.killed_by == "SIGPIPE"
    assert "killed by SIGPIPE" in str(run.results())
    run.expect(killed_by="SIGPIPE")


def test_parent_signal_handlers_and_cwd_are_untouched(tmp_path):
    def meddles(lab):
        os.chdir(tmp_path)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGCHLD)}
    cwd = os.getcwd()
    socklab.run(meddles)
    assert os.getcwd() == cwd
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_run_leaves_no_descriptors_or_children():
    socklab.run(scenarios.close_then_send)  # warm up lazy imports and the probe
    before = open_fds()
    for _ in range(3):
        socklab.run(scenarios.close_then_send)
    assert open_fds() == before
    assert_no_children()


def test_run_refuses_what_is_not_a_scenario():
    with pytest.raises(TypeError, match="needs a function taking a Lab"):
        socklab.run("close_then_send")


def test_wait_packet_times_out_with_a_clear_message():
    def waits(lab):
        lab.wait_packet("R", timeout=0.05)

    with pytest.raises(socklab.ScenarioError, match=r"no \[R\] packet .* within 0.05s"):
        socklab.run(waits)


def test_wait_state_times_out_saying_what_the_state_is():
    def waits(lab):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 4321))
        listener.listen(1)
        lab.wait_state(listener, "CLOSE_WAIT", timeout=0.05)

    with pytest.raises(socklab.ScenarioError, match="did not reach CLOSE_WAIT within 0.05s .it is LISTEN"):
        socklab.run(waits)


def test_wait_poll_records_the_events():
    def polls(lab):
        a, b = socket.socketpair()
        b.close()
        lab.wait_poll(a, select.POLLIN | select.POLLRDHUP, label="poll after peer close")

    run = socklab.run(polls)
    assert run.call("poll after peer close").outcome == "POLLIN|POLLHUP|POLLRDHUP"


@pytest.fixture
def refused_namespaces(monkeypatch):
    """Simulate a kernel that refuses namespaces (seccomp, AppArmor): unshare fails with EPERM."""

    def refuse(flags):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_netns, "unshare", refuse)
    monkeypatch.setattr(_netns, "_probe_cache", None)
    yield
    _netns._probe_cache = None


def test_refused_namespace_still_runs_and_says_what_is_missing(refused_namespaces):
    # waits for states, not packets: without a namespace an unprivileged user cannot capture
    run = socklab.run(scenarios.close_then_send_by_states)
    assert run.isolation.mode == "none"
    text = str(run)
    assert "NOT isolated" in text and "network namespaces refused" in text and "Fix:" in text
    assert [c.outcome for c in run.calls] == ["None", "1", "EPIPE"]
    # only the scenario's own sockets and packets, even in the host's namespace
    ports = {scenarios.PORT, run.call("send #1").peer.rpartition(":")[2]}
    for snap in run.snapshots:
        for row in snap.rows:
            assert str(row.local_port) in {str(p) for p in ports}
    if run.isolation.capture:
        assert run.flow() == scenarios.SEED_FLOW


UNPRIVILEGED_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import socklab, scenarios
    run = socklab.run(scenarios.close_then_send)
    print(run.isolation.mode, run.isolation.capture)
    print([c.outcome for c in run.calls])
    print(run.flow())
""")


def test_unprivileged_user_runs_isolated_with_capture(unprivileged):
    result = unprivileged.run(["-c", UNPRIVILEGED_RUN, str(unprivileged.home / "tests")])
    assert result.returncode == 0, result.stderr
    mode, outcomes, flow = result.stdout.splitlines()
    assert mode == "userns+netns True"
    assert outcomes == "['None', '1', 'EPIPE']"
    assert flow == str(scenarios.SEED_FLOW)


def test_wait_state_finds_a_reset_socket_by_inode_until_it_is_gone():
    def reset(lab):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 4321))
        listener.listen(1)
        client = socket.create_connection(("127.0.0.1", 4321))
        server, _ = listener.accept()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        lab.wait_state(server, None)  # server lost its peer address; still found, then gone
        lab.snapshot("after reset")

    run = socklab.run(reset)
    assert set(run.states_at("after reset")) == {"listener"}


def test_wait_state_finds_a_socket_closed_through_lab_call():
    def closes(lab):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 4321))
        listener.listen(1)
        client = socket.create_connection(("127.0.0.1", 4321))
        server, _ = listener.accept()  # kept open: the client waits in FIN_WAIT2 for its FIN
        lab.call(client.close)
        lab.wait_state(client, "FIN_WAIT2")
        lab.snapshot("closed")
        server.close()

    assert socklab.run(closes).states_at("closed")["client"].state == "FIN_WAIT2"


def test_wait_state_on_a_socket_never_seen_open_says_what_to_do():
    def closes(lab):
        s = socket.socket()
        s.close()
        lab.wait_state(s, "FIN_WAIT2")

    with pytest.raises(socklab.ScenarioError, match="closed before socklab saw its addresses"):
        socklab.run(closes)
