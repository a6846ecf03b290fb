"""The child process: forked from a single-threaded parent, spawned from a threaded one."""

import os
import textwrap
import threading
import types
import warnings

import pytest

import scenarios
import socklab
from socklab import _netns, _spawn


@pytest.fixture
def threaded():
    """A second thread alive for the test's duration, as in a Jupyter kernel."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    assert _spawn.threads() >= 2
    yield
    stop.set()
    thread.join()


@pytest.fixture
def no_fork(monkeypatch):
    def refuse():
        raise AssertionError("os.fork() called in a threaded process")

    monkeypatch.setattr(os, "fork", refuse)


def test_no_fork_warning_from_a_threaded_parent(threaded):
    """Python 3.12+ warns when a threaded process forks; a run from one must not."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        socklab.run(scenarios.close_then_send)
    assert not [w for w in caught if "fork" in str(w.message)], [str(w.message) for w in caught]


def test_a_threaded_parent_is_never_forked_and_the_run_is_the_same(threaded, no_fork):
    run = socklab.run(scenarios.close_then_send)
    assert [c.outcome for c in run.calls] == ["None", "1", "EPIPE"]
    assert run.flow() == scenarios.SEED_FLOW


def test_a_single_threaded_parent_forks(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("spawned although this process has one thread")

    monkeypatch.setattr(os, "posix_spawn", refuse)
    assert _spawn.threads() == 1
    assert [c.outcome for c in socklab.run(scenarios.close_then_send).calls] == ["None", "1", "EPIPE"]


FAKE_MAIN = textwrap.dedent("""
    import socket
    PORT = 4321

    def talk(lab):
        listener = socket.create_server(("127.0.0.1", PORT))
        client = socket.create_connection(("127.0.0.1", PORT))
        server, _ = listener.accept()
        lab.call(client.send, b"hi", label="send")
        lab.call(server.recv, 10, label="recv")
""")


def test_a_scenario_defined_in_a_fake_main_runs_from_a_threaded_parent(threaded, no_fork):
    """As sphinx-gallery runs an example: exec'd into a module named __main__ that cannot be imported."""
    module = types.ModuleType("__main__")
    exec(compile(FAKE_MAIN, "<example>", "exec"), module.__dict__)
    run = socklab.run(module.talk)
    assert [c.outcome for c in run.calls] == ["2", "b'hi'"]


def test_a_failing_scenario_from_a_threaded_parent_brings_its_traceback(threaded, no_fork):
    def broken(lab):
        raise ValueError("boom in the spawned child")

    with pytest.raises(socklab.ScenarioError, match="raised ValueError: boom in the spawned child"):
        socklab.run(broken)


def test_a_scenario_that_cannot_be_pickled_says_why(threaded, no_fork):
    lock = threading.Lock()

    def uses_the_callers_lock(lab):
        with lock:
            pass

    with pytest.raises(TypeError, match="lock"):
        socklab.run(uses_the_callers_lock)


def test_the_probe_from_a_threaded_parent_does_not_fork(threaded, no_fork, monkeypatch):
    monkeypatch.setattr(_netns, "_probe_cache", None)
    try:
        assert _netns.probe().mode in ("netns", "userns+netns", "none")
    finally:
        _netns._probe_cache = None
