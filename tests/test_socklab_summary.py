"""The matrix and errno rows are read from the run, not typed (docs/_ext/socklab_summary.py)."""

import sys
from pathlib import Path

import pytest

from builders import CLIENT, LISTENER, SERVER, call, row
from socklab import State
from socklab._records import Finished, Frames, Snapshot, Started
from socklab._run import Run
from socklab._trace import dissect
from test_trace import SEED

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
from socklab_summary import errno_rows, error_rows, matrix_row  # noqa: E402

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


def with_kernel_events(run):
    """`run` with the kernel's account of its reset: the client's timewait socket sent it, the server took it in."""
    from socket import AF_INET

    from socklab._kevents import ResetReceived, ResetSent
    from socklab._records import KernelEvents

    sent = ResetSent(time_ns=TIMES[6], family=AF_INET, saddr="127.0.0.1", sport=50000, daddr="127.0.0.1",
                     dport=4321, sk=7, state=State.TIME_WAIT, reason="TCP_TIMEWAIT_SOCKET")
    taken = ResetReceived(time_ns=TIMES[6] + 1, family=AF_INET, saddr="127.0.0.1", sport=4321, daddr="127.0.0.1",
                          dport=50000, sk=8, state=State.CLOSE_WAIT)
    return Run(run.name, [*run.records, KernelEvents((sent, taken))])


def test_error_rows_file_a_failed_call_under_its_message_with_what_reached_its_socket():
    (row,) = error_rows(with_kernel_events(run_with()))
    assert row == {"message": "Broken pipe", "call": "server: send #2", "raised": "EPIPE",
                   "socket before the call": "gone from the table",
                   "on the wire before the call":
                       "FIN from client, then RST from client (TCP_TIMEWAIT_SOCKET, taken in CLOSE-WAIT)",
                   "earlier error on that socket": "none"}


def test_error_rows_say_when_the_kernel_recorded_no_reason_instead_of_guessing_one():
    (row,) = error_rows(run_with("ECONNRESET"))
    assert row["message"] == "Connection reset by peer"
    assert row["on the wire before the call"] == ("FIN from client, then RST from client "
                                                       "(reason not recorded: the run recorded no kernel events)")


def test_an_exception_without_errno_is_filed_under_its_own_message():
    records = run_with().records
    failed = records[6]
    library = type(failed)(**{**failed.__dict__, "errno": None, "exception": "http.client.RemoteDisconnected",
                              "message": "Remote end closed connection without response"})
    (row,) = error_rows(Run("lib", [*records[:6], library, *records[7:]]))
    assert (row["message"], row["raised"]) == ("Remote end closed connection without response",
                                               "http.client.RemoteDisconnected")


def test_a_connect_that_no_syn_ack_answered_is_told_by_its_unanswered_syns():
    from builders import end
    from test_trace import T0, frame

    syns = [(T0, frame(50000, 4321, "S", 1000)), (T0 + 1_000_000_000, frame(50000, 4321, "S", 1000))]
    timed_out = call("connect()", T0 + 3_000_000_000, errno="ETIMEDOUT", start=T0 - 1, local="0.0.0.0:0")
    run = Run("syn", [Started("6.18.0", "netns", True, "", "", 0), timed_out, Frames(tuple(syns)),
                      Finished(T0 + 3_000_000_001)])
    (row,) = error_rows(run)
    assert end("127.0.0.1:50000") == run.packets[0].source
    assert (row["message"], row["on the wire before the call"]) == ("Connection timed out",
                                                                         "no SYN-ACK: 2 SYNs unanswered")


def test_a_call_the_callers_own_kernel_refused_involved_no_packet():
    refused = call("bind()", TIMES[0] - 5, errno="EADDRINUSE", start=TIMES[0] - 10, local="0.0.0.0:0")
    run = Run("bind", [Started("6.18.0", "netns", True, "", "", 0), refused, Frames(tuple(SEED)), Finished(TIMES[6])])
    (row,) = error_rows(run)
    assert row["message"] == "Address already in use"
    assert row["on the wire before the call"] == "no TCP packet: the caller's own kernel refused the call"


def test_a_call_on_no_tcp_socket_involved_no_packet():
    broken = call("write()", TIMES[0] - 5, errno="EPIPE", start=TIMES[0] - 10)
    run = Run("pipe", [Started("6.18.0", "netns", True, "", "", 0), broken, Frames(tuple(SEED)), Finished(TIMES[6])])
    assert error_rows(run)[0]["on the wire before the call"] == "not a TCP socket: no packet"


def test_the_callers_own_fin_and_rst_are_named_as_its_own():
    records = run_with().records
    client_recv = call("recv", TIMES[6] + 2, errno="ECONNRESET", local=CLIENT[0], start=TIMES[6] + 1)
    (row,) = error_rows(Run("own", [*records[:6], client_recv, *records[7:]]))
    assert row["on the wire before the call"] == ("FIN sent by it, then RST sent by it "
                                                  "(reason not recorded: the run recorded no kernel events)")


def test_a_later_error_on_the_same_socket_names_the_earlier_one():
    records = run_with().records
    reset_first = call("recv", TIMES[6] + 2, errno="ECONNRESET", local=SERVER[0], inode=42, start=TIMES[6] + 1)
    rows = error_rows(Run("two", [*records[:6], reset_first, *records[6:]]))
    assert [r["earlier error on that socket"] for r in rows] == ["none", "recv: ECONNRESET"]
