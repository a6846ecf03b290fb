"""Roles: who is who, from fixed records (no kernel involved)."""

import pytest

from builders import LISTENER, SERVER, call, row, seed_run
from socklab._records import Finished, Named, Snapshot, Started
from socklab._run import Run
from test_trace import SEED


def test_roles_name_listener_client_and_server():
    assert list(seed_run(SEED).states_at("after close")) == ["listener", "client", "server"]


def test_flow_names_who_sent_which_flags():
    assert seed_run(SEED).flow() == ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]",
                                     "server [P.]", "client [R]"]


def test_calls_are_made_by_their_sockets_role_even_after_reset():
    run = seed_run(SEED)
    assert [run.actor(c) for c in run.calls] == ["client", "server", "server"]


def test_a_call_is_found_by_who_and_label_or_by_a_unique_label():
    run = seed_run(SEED)
    assert run.call("server: send #1") is run.call("send #1") is run.calls[1]


def test_unknown_calls_list_the_known_ones_by_key():
    with pytest.raises(KeyError, match=r"no call is named 'send #3'.*'client: close'.*'server: send #2'"):
        seed_run(SEED).call("send #3")


def test_a_label_two_calls_share_must_be_named_with_who_made_it():
    run = Run("two", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("s", 1, (LISTENER,)),
                      call("close()", 2, local="127.0.0.1:50000", peer="127.0.0.1:4321"),
                      call("close()", 3, local="127.0.0.1:4321", peer="127.0.0.1:50000"), Finished(4)])
    with pytest.raises(KeyError, match="several calls are named 'close\\(\\)'"):
        run.call("close()")
    assert run.call("server: close()") is run.calls[1]


def test_who_made_a_call_can_be_said_and_a_call_on_no_socket_is_by_nobody():
    run = Run("pipe", [Started("6.18.0", "netns", True, "", "", 0), call("write()", 1, 1),
                       call("epoll", 2, 5, by="client"), Finished(3)])
    assert [run.actor(c) for c in run.calls] == [None, "client"]
    assert run.call("client: epoll").value == 5 and run.call("write()").value == 1


def test_a_named_socket_keeps_its_name_in_tables_and_calls():
    named = Named("upstream", 7, None, None)
    sock = row("ESTABLISHED", *SERVER, inode=7)
    run = Run("named", [Started("6.18.0", "netns", True, "", "", 0), named, Snapshot("s", 1, (sock,)),
                        call("send", 2, 1, local=SERVER[0], peer=SERVER[1], inode=7), Finished(3)])
    assert list(run.states_at("s")) == ["upstream"]
    assert run.actor(run.calls[0]) == "upstream"


def test_several_servers_are_told_apart_by_their_peers_port():
    one = row("ESTABLISHED", "127.0.0.1:4321", "127.0.0.1:50000")
    two = row("ESTABLISHED", "127.0.0.1:4321", "127.0.0.1:50001")
    run = Run("two", [Started("6.18.0", "netns", True, "", "", 0), Snapshot("s", 1, (LISTENER, one, two)),
                      Finished(2)])
    assert list(run.states_at("s")) == ["listener", "server:50000", "server:50001"]
