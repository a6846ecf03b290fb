"""Run: the data of a run, and the methods a page calls on it."""

from builders import seed_run
from socklab._records import Exited, Finished, Started, Value
from socklab._run import Run
from test_trace import SEED


def test_pcap_of_a_run_holds_its_packets():
    assert seed_run(SEED).pcap().count(b"\x08\x00E") == len(SEED)


def test_the_signal_that_killed_a_run_is_part_of_its_records():
    run = Run("killed", [Started("6.18.0", "netns", True, "", "", 0), Exited("SIGPIPE", None)])
    assert run.killed_by == "SIGPIPE"
    assert "killed by SIGPIPE" in str(run.results())


def test_recorded_values_are_kept_as_values():
    run = Run("v", [Started("6.18.0", "netns", True, "", "", 0), Value("ms", 1, 1.5), Finished(2)])
    assert run.value("ms") == 1.5
    assert run.last_step() == "recorded value 'ms'"
