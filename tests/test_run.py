"""Run: roles, views and claims, from fixed records (no kernel involved)."""

import dataclasses

import pytest

from socklab import ClaimError, Run
from socklab._records import Call, Finished, Frames, Snapshot, Started
from socklab._states import SocketRow
from test_trace import SEED

LISTENER = SocketRow("tcp", "LISTEN", 0, 1, "127.0.0.1:4321", "0.0.0.0:*", "", 1)


def row(state, local, peer, recv_q=0):
    return SocketRow("tcp", state, recv_q, 0, local, peer, "", 0)


CLIENT, SERVER = ("127.0.0.1:50000", "127.0.0.1:4321"), ("127.0.0.1:4321", "127.0.0.1:50000")


def seed_run(second_send="EPIPE", server_state="CLOSE_WAIT"):
    return Run("seed", [
        Started("6.18.0", "netns", True, "", "", 0),
        Snapshot("before", 1, (LISTENER, row("ESTABLISHED", *CLIENT), row("ESTABLISHED", *SERVER))),
        Call("close", 2, "None", None, *CLIENT),
        Snapshot("after close", 3, (LISTENER, row("FIN_WAIT2", *CLIENT), row(server_state, *SERVER, recv_q=1))),
        Call("send #1", 4, "1", None, *SERVER),
        Snapshot("after send", 5, (LISTENER,)),
        Call("send #2", 6, None if second_send == "EPIPE" else second_send,
             "EPIPE" if second_send == "EPIPE" else None, "127.0.0.1:4321", ""),
        Frames(tuple(SEED)),
        Finished(7),
    ])


def test_roles_name_listener_client_and_server():
    assert list(seed_run().states_at("after close")) == ["listener", "client", "server"]


def test_flow_names_who_sent_which_flags():
    assert seed_run().flow() == ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
                                 "server [P.]", "client [R]"]


def test_calls_are_attributed_to_their_side_even_after_reset():
    assert [row[1] for row in seed_run().results().rows] == ["client", "server", "server"]


def test_states_view_marks_changes_and_lists_gone_sockets():
    text = str(seed_run().states())
    assert "> client    FIN-WAIT-2" in text
    assert "gone since 'after close': client 127.0.0.1:50000 -> 127.0.0.1:4321 (was FIN-WAIT-2)" in text


def test_true_claims_pass():
    seed_run().expect(calls={"send #1": 1, "send #2": "EPIPE"},
                      flow=seed_run().flow(),
                      states={"after close": {"client": "FIN-WAIT-2", "server": ("CLOSE_WAIT", 1)},
                              "after send": {"client": None}})


def test_a_broken_call_claim_names_the_call_and_both_outcomes():
    with pytest.raises(ClaimError, match=r"call 'send #2': the page says EPIPE, the kernel returned 1"):
        seed_run(second_send="1").expect(calls={"send #2": "EPIPE"})


def test_a_broken_state_claim_names_the_moment_and_socket():
    with pytest.raises(ClaimError, match=r"state of server at 'after close': the page says state CLOSE_WAIT, "
                                         r"the kernel shows ESTABLISHED"):
        seed_run(server_state="ESTABLISHED").expect(states={"after close": {"server": "CLOSE_WAIT"}})


def test_a_broken_flow_claim_shows_a_diff():
    with pytest.raises(ClaimError, match=r"(?s)packet flow differs.*-client \[F\.\].*\+client \[R\]"):
        seed_run().expect(flow=["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
                                "server [P.]", "client [F.]"])


def test_every_broken_claim_is_listed_with_the_kernel_release():
    with pytest.raises(ClaimError, match=r"2 claim\(s\) of scenario 'seed' broke on Linux 6.18.0") as info:
        seed_run().expect(calls={"send #1": 0, "send #2": "ECONNRESET"})
    assert "send #1" in str(info.value) and "send #2" in str(info.value)


def test_unknown_labels_list_the_known_ones():
    with pytest.raises(KeyError, match="no call labelled 'send #3'.*'send #2'"):
        seed_run().expect(calls={"send #3": 1})
    with pytest.raises(KeyError, match="no snapshot labelled 'later'.*'after send'"):
        seed_run().states_at("later")


def test_html_and_text_show_the_same_cells():
    run = seed_run()
    html, text = run._repr_html_(), str(run)
    for cell in ("FIN-WAIT-2", "CLOSE-WAIT", "EPIPE", "Flags [R], seq 2"):
        assert cell in html and cell in text
    assert 'class="sl-rst"' in html and 'class="sl-changed"' in html


def test_pcap_of_a_run_holds_its_packets():
    assert seed_run().pcap().count(b"\x08\x00E") == len(SEED)


def test_trace_without_capture_says_why_instead_of_an_empty_table():
    run = Run("blind", [Started("6.18.0", "none", False, "packet capture refused (EPERM)", "run as root", 0),
                        Finished(1)])
    text = str(run.trace())
    assert "no capture: packet capture refused (EPERM). run as root" in text


def test_state_claims_can_check_more_columns():
    run = seed_run()
    run.expect(states={"after close": {"server": {"state": "CLOSE-WAIT", "recv_q": 1, "send_q": 0, "timer": ""}}})
    with pytest.raises(ClaimError, match="server at 'after close': the page says send_q 5, the kernel shows 0"):
        run.expect(states={"after close": {"server": {"state": "CLOSE_WAIT", "send_q": 5}}})


def test_packet_claims_check_fields_of_one_packet():
    run = seed_run()
    run.expect(packets={6: {"flags": "R", "seq": 2, "ip": "IP"}})
    with pytest.raises(ClaimError, match=r"packet 6 \(R\) ack: the page says 1, the trace has None"):
        run.expect(packets={6: {"ack": 1}})
    with pytest.raises(ClaimError, match="packet 9: the page describes it, the trace has 7 packets"):
        run.expect(packets={9: {"flags": "R"}})


def test_a_unix_socket_whose_peer_closed_is_not_reported_gone():
    a = SocketRow("u_str", "ESTABLISHED", 0, 0, "* 10", "* 11", "", 10)
    b = SocketRow("u_str", "ESTABLISHED", 0, 0, "* 11", "* 10", "", 11)
    b_after = SocketRow("u_str", "ESTABLISHED", 0, 0, "* 11", "*", "", 11)
    run = Run("pair", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("before", 1, (a, b)),
                       Snapshot("after", 2, (b_after,)), Finished(3)])
    text = str(run.states("after"))
    assert "gone since 'before': unix 10" in text and "unix 11" not in text.split("gone")[1]


def test_a_socket_closed_by_its_program_is_not_reported_gone_while_listed():
    open_client = dataclasses.replace(row("ESTABLISHED", *CLIENT), inode=9)
    orphan = row("FIN_WAIT2", *CLIENT)  # inode 0 once the descriptor is closed
    run = Run("orphan", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("before", 1, (LISTENER, open_client)),
                         Snapshot("after", 2, (LISTENER, orphan)), Finished(3)])
    text = str(run.states("after"))
    assert "gone" not in text and "> client    FIN-WAIT-2" in text


def test_several_servers_are_told_apart_by_their_peers_port():
    one, two = row("ESTABLISHED", "127.0.0.1:4321", "127.0.0.1:50000"), row("ESTABLISHED", "127.0.0.1:4321",
                                                                               "127.0.0.1:50001")
    run = Run("two", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("s", 1, (LISTENER, one, two)),
                      Finished(2)])
    assert list(run.states_at("s")) == ["listener", "server:50000", "server:50001"]


def test_packet_claims_without_capture_say_why_and_what_to_do():
    run = Run("blind", [Started("6.18.0", "none", False, "packet capture refused (EPERM)", "run as root", 0),
                        Finished(1)])
    with pytest.raises(ClaimError, match=r"packet claims cannot be checked: no capture \(packet capture "
                                         r"refused \(EPERM\)\)\. Fix: run as root"):
        run.expect(flow=["client [S]"])
