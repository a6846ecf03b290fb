"""The shared vocabulary: states with their three spellings, endpoints as values."""

import socket

import pytest

from socklab import Endpoint, State


@pytest.mark.parametrize("name", ["FIN_WAIT2", "TCP_FIN_WAIT2", "FIN-WAIT-2", "fin-wait-2", State.FIN_WAIT2])
def test_a_state_is_found_by_any_of_its_spellings(name):
    assert State.parse(name) is State.FIN_WAIT2


@pytest.mark.parametrize(("state", "kernel", "ss", "rfc"), [
    (State.ESTABLISHED, "TCP_ESTABLISHED", "ESTAB", "ESTABLISHED"),
    (State.CLOSE, "TCP_CLOSE", "UNCONN", "CLOSED"),
    (State.NEW_SYN_RECV, "TCP_NEW_SYN_RECV", "SYN-RECV", "SYN-RECEIVED"),
    (State.TIME_WAIT, "TCP_TIME_WAIT", "TIME-WAIT", "TIME-WAIT"),
])
def test_each_state_knows_how_the_kernel_ss_and_rfc_spell_it(state, kernel, ss, rfc):
    assert (state.kernel, state.ss, state.rfc) == (kernel, ss, rfc)
    assert State.parse(kernel) is state and State.parse(ss).machine is state.machine and State.parse(rfc) is (
        state.machine)


def test_states_are_numbered_as_the_kernel_numbers_them():
    assert State(8) is State.CLOSE_WAIT and State(10) is State.LISTEN  # include/net/tcp_states.h


def test_a_request_socket_is_syn_received_in_rfc_9293s_machine():
    assert State.NEW_SYN_RECV.machine is State.SYN_RECV and State.CLOSE_WAIT.machine is State.CLOSE_WAIT


def test_an_unknown_state_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown TCP state 'FIN_WAIT3'; the states are ESTABLISHED, SYN-SENT"):
        State.parse("FIN_WAIT3")


def test_every_spelling_names_exactly_one_state():
    for state in State:
        for spelling in (state.kernel, state.ss, state.rfc):
            assert State.parse(spelling).machine is state.machine


@pytest.mark.parametrize(("end", "text"), [
    (Endpoint(socket.AF_INET, "127.0.0.1", 4321), "127.0.0.1:4321"),
    (Endpoint(socket.AF_INET6, "::1", 4321), "[::1]:4321"),
    (Endpoint(socket.AF_INET, "0.0.0.0", None), "0.0.0.0:*"),
    (Endpoint(socket.AF_UNIX, "/tmp/s", 41233), "/tmp/s 41233"),
    (Endpoint(socket.AF_UNIX, "*", None), "*"),
])
def test_endpoints_print_as_ss_prints_them(end, text):
    assert str(end) == text


@pytest.mark.parametrize("text", ["127.0.0.1:4321", "[::1]:4321", "0.0.0.0:*", "[2001:db8::1]:80"])
def test_an_inet_endpoint_reads_back_from_its_text(text):
    assert str(Endpoint.parse(text)) == text


def test_endpoints_come_from_socket_addresses_and_sockets():
    assert Endpoint.of(("::1", 4321, 0, 0)) == Endpoint(socket.AF_INET6, "::1", 4321)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert Endpoint.of_socket(s) == Endpoint(socket.AF_INET, "127.0.0.1", s.getsockname()[1])
        assert Endpoint.of_socket(s, peer=True) is None
    a, b = socket.socketpair()
    with a, b:
        assert Endpoint.of_socket(a) is None  # a Unix socket's ends come from sock_diag, by inode


def test_an_ipv4_mapped_address_reads_the_same_from_text_and_from_a_socket():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::ffff:127.0.0.1", 0))
        port = s.getsockname()[1]
        assert Endpoint.parse(f"[::ffff:127.0.0.1]:{port}") == Endpoint.of_socket(s)
