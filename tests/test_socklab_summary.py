"""The matrix and errno rows are read from the run, not typed (docs/_ext/socklab_summary.py)."""

import sys
from pathlib import Path

import pytest

from builders import CLIENT, LISTENER, SERVER, call, row
from socklab._records import Finished, Frames, Snapshot, Started
from socklab._run import Run
from socklab._trace import dissect
from test_trace import SEED

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
from socklab_summary import errno_rows, matrix_row  # noqa: E402

TIMES = [t for t, _ in SEED]  # packet times: SYN.. FIN at [3], data at [5], RST at [6]


def run_with(second_send_errno="EPIPE"):
    server_row = row("CLOSE_WAIT", *SERVER, recv_q=1, inode=42)
    return Run("seed", [
        Started("6.18.0", "netns", True, "", "", 0),
        Snapshot("before", TIMES[2] + 1, (LISTENER, row("ESTABLISHED", *CLIENT), row("ESTABLISHED", *SERVER))),
        call("close", TIMES[3] + 5, None, local=CLIENT[0], peer=CLIENT[1], start=TIMES[3] - 1),
        Snapshot("after close", TIMES[4] + 1, (LISTENER, row("FIN_WAIT2", *CLIENT), server_row)),
        call("send #1", TIMES[5] + 5, 1, local=SERVER[0], peer=SERVER[1], inode=42, start=TIMES[5] - 1),
        Snapshot("after send", TIMES[6] + 1, (LISTENER,)),
        call("send #2", TIMES[6] + 3, errno=second_send_errno, local=SERVER[0], inode=42, start=TIMES[6] + 2),
        Frames(tuple(SEED)),
        Finished(TIMES[6] + 4),
    ])


def test_matrix_row_reads_outcomes_wire_and_leftovers_from_the_run():
    run = run_with().summarize(closer="close", sends=["send #1", "send #2"])
    assert dissect(SEED)  # the frames are real TCP
    assert matrix_row(run) == ["client: close", "FIN, then RST", "1", "EPIPE", "–",
                               "with EPIPE, unless MSG_NOSIGNAL or ignored", "none"]


def test_matrix_row_follows_the_kernel_when_outcomes_change():
    run = run_with("ECONNRESET").summarize(closer="close", sends=["send #1", "send #2"])
    assert matrix_row(run)[3] == "ECONNRESET"
    assert matrix_row(run)[5] == "no (no EPIPE)"


def test_matrix_row_spells_states_as_ss_does():
    run = run_with().summarize(closer="close")
    assert matrix_row(run)[-1] == "client FIN-WAIT-2, server CLOSE-WAIT"


def test_matrix_row_ends_at_the_first_snapshot_after_its_calls_not_at_the_runs_cleanup():
    records = run_with().records
    cleanup = [call("close at the end", TIMES[6] + 10, None, local=CLIENT[0], start=TIMES[6] + 9),
               Snapshot("after cleanup", TIMES[6] + 11, (row("TIME_WAIT", *CLIENT),))]
    run = Run("seed", records[:-1] + cleanup + records[-1:]).summarize(closer="close")
    assert matrix_row(run)[-1] == "client FIN-WAIT-2, server CLOSE-WAIT"  # "after close", not "after cleanup"
    assert matrix_row(run)[1] == "FIN"  # the client's RST came after that snapshot
    assert matrix_row(run.summarize(closer="close", sends=["send #1"]))[1:2] == ["FIN, then RST"]


def test_summarize_refuses_unknown_labels():
    with pytest.raises(KeyError, match="no call is named 'shutdown'"):
        run_with().summarize(closer="shutdown")


def test_errno_rows_give_the_socket_state_before_the_failed_call():
    assert errno_rows(run_with()) == [["send #2", "server", "not in the table (reset)", "EPIPE"]]


def test_a_row_whose_scenario_goes_on_before_a_snapshot_lists_no_sockets_and_cuts_the_wire_there():
    records = run_with().records
    # the server closes before the run's next snapshot: that table shows the cleanup, not the row
    cleanup = [call("close()", TIMES[3] + 7, None, local=SERVER[0], start=TIMES[3] + 6)]
    run = Run("seed", records[:3] + cleanup + records[3:]).summarize(closer="close")
    assert matrix_row(run)[-1] == "–"
    assert matrix_row(run)[1] == "FIN"


def test_the_sigpipe_column_is_about_the_rows_calls():
    run = run_with().summarize(closer="close", sends=["send #1"])
    assert matrix_row(run)[5] == "no (no EPIPE)"  # send #2 failed with EPIPE, but it is not in the row


def test_errno_rows_say_reset_only_when_an_rst_came_before_the_call():
    records = run_with().records
    early = call("bind", TIMES[0] - 2, errno="EADDRINUSE", local=SERVER[0], inode=7, start=TIMES[0] - 3)
    run = Run("seed", records[:1] + [Snapshot("empty", TIMES[0] - 4, ())] + [early] + records[1:])
    assert errno_rows(run)[0] == ["bind", "server", "not in the table", "EADDRINUSE"]
    assert errno_rows(run)[1] == ["send #2", "server", "not in the table (reset)", "EPIPE"]
