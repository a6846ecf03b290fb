"""The matrix and errno rows are read from the run, not typed."""

import dataclasses

import pytest

from socklab import Run
from socklab._records import Call, Finished, Frames, Snapshot, Started
from socklab._summary import errno_rows, matrix_row
from socklab._trace import dissect
from test_run import CLIENT, LISTENER, SEED, SERVER, row

TIMES = [t for t, _ in SEED]  # packet times: SYN.. FIN at [3], data at [5], RST at [6]


def run_with(second_send_errno="EPIPE"):
    server_row = dataclasses.replace(row("CLOSE_WAIT", *SERVER, recv_q=1), inode=42)
    return Run("seed", [
        Started("6.18.0", "netns", True, "", "", 0),
        Snapshot("before", TIMES[2] + 1, (LISTENER, row("ESTABLISHED", *CLIENT), row("ESTABLISHED", *SERVER))),
        Call("close", TIMES[3] - 1, "None", None, *CLIENT),
        Snapshot("after close", TIMES[4] + 1, (LISTENER, row("FIN_WAIT2", *CLIENT), server_row)),
        Call("send #1", TIMES[5] - 1, "1", None, *SERVER, False, 42),
        Snapshot("after send", TIMES[6] + 1, (LISTENER,)),
        Call("send #2", TIMES[6] + 2, None, second_send_errno, "127.0.0.1:4321", "", False, 42),
        Frames(tuple(SEED)),
        Finished(TIMES[6] + 3),
    ])


def test_matrix_row_reads_outcomes_wire_and_leftovers_from_the_run():
    run = run_with().summarize(closer="close", sends=["send #1", "send #2"])
    assert dissect(SEED)  # the frames are real TCP
    assert matrix_row(run) == ["close", "FIN, then RST", "1", "EPIPE", "–",
                               "with EPIPE, unless MSG_NOSIGNAL or ignored", "none"]


def test_matrix_row_follows_the_kernel_when_outcomes_change():
    run = run_with("ECONNRESET").summarize(closer="close", sends=["send #1", "send #2"])
    assert matrix_row(run)[3] == "ECONNRESET"
    assert matrix_row(run)[5] == "no (no EPIPE)"


def test_summarize_refuses_unknown_labels():
    with pytest.raises(KeyError, match="no call labelled 'shutdown'"):
        run_with().summarize(closer="shutdown")


def test_errno_rows_give_the_socket_state_before_the_failed_call():
    assert errno_rows(run_with()) == [["send #2", "server", "not in the table (reset)", "EPIPE"]]
