"""Views: socket tables, trace and call results, from fixed records (no kernel involved)."""

import dataclasses
import socket

from builders import CLIENT, LISTENER, row, seed_run
from socklab import Endpoint, State
from socklab._records import Finished, Snapshot, Started, Value
from socklab._run import Run
from socklab._states import SocketRow
from test_trace import SEED


def test_states_view_marks_changes_and_lists_gone_sockets_in_ss_spelling():
    text = str(seed_run(SEED).states())
    assert "> client    FIN-WAIT-2" in text
    assert "gone since 'after close': client 127.0.0.1:50000 -> 127.0.0.1:4321 (was FIN-WAIT-2)" in text


def test_results_say_who_made_each_call_and_list_recorded_values():
    run = Run("v", [*seed_run(SEED).records[:-1], Value("bytes sent", 8, 8192), Finished(9)])
    rows = run.results().rows
    assert rows[:3] == [["client", "close", "None"], ["server", "send #1", "1"], ["server", "send #2", "EPIPE"]]
    assert rows[3] == ["", "bytes sent", "8192"]


def test_html_and_text_show_the_same_cells():
    run = seed_run(SEED)
    html, text = run._repr_html_(), str(run)
    for cell in ("FIN-WAIT-2", "CLOSE-WAIT", "EPIPE", "Flags [R], seq 2"):
        assert cell in html and cell in text
    assert 'class="sl-rst"' in html and 'class="sl-changed"' in html


def test_trace_without_capture_says_why_instead_of_an_empty_table():
    run = Run("blind", [Started("6.18.0", "none", False, "packet capture refused (EPERM)", "run as root", 0),
                        Finished(1)])
    assert "no capture: packet capture refused (EPERM). run as root" in str(run.trace())


def unix(inode, peer):
    return SocketRow("u_str", State.ESTABLISHED, 0, 0, Endpoint(socket.AF_UNIX, "*", inode),
                     Endpoint(socket.AF_UNIX, "*", peer), "", inode)


def test_a_unix_socket_whose_peer_closed_is_not_reported_gone_and_is_spelled_like_tcp():
    run = Run("pair", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("before", 1, (unix(10, 11), unix(11, 10))),
                       Snapshot("after", 2, (unix(11, None),)), Finished(3)])
    text = str(run.states("after"))
    assert "gone since 'before': unix 10 * 10 -> * 11 (was ESTAB)" in text
    assert "unix 11" not in text.split("gone")[1]
    assert "ESTABLISHED" not in text


def test_a_socket_closed_by_its_program_is_not_reported_gone_while_listed():
    open_client = dataclasses.replace(row("ESTABLISHED", *CLIENT), inode=9)
    orphan = row("FIN_WAIT2", *CLIENT)  # inode 0 once the descriptor is closed
    run = Run("orphan", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("before", 1, (LISTENER, open_client)),
                         Snapshot("after", 2, (LISTENER, orphan)), Finished(3)])
    text = str(run.states("after"))
    assert "gone" not in text and "> client    FIN-WAIT-2" in text
