"""A namespace's TCP counters and TCP_INFO: what moved, per namespace, with no privilege needed."""

from __future__ import annotations

import os
import select
import socket
import struct

import pytest

import nschild
from socklab import State, _bpf, _counters, _netns

PORT = 4321

NETSTAT = """TcpExt: SyncookiesSent TCPAbortOnData TCPAbortOnClose
TcpExt: 0 3 1
IpExt: InNoRoutes InOctets
IpExt: 0 1200
"""
SNMP = """Tcp: RtoAlgorithm MaxConn ActiveOpens OutRsts CurrEstab
Tcp: 1 -1 5 2 0
"""


def isolation_mode() -> str:
    mode = _netns.probe().mode
    if mode == "none":
        pytest.skip("no network namespace available: " + _netns.probe().reason)
    return mode


def counted(scenario) -> dict[str, int]:
    """The TCP counters a scenario moved, read inside its own namespace."""
    def measured():
        before = _counters.read_counters()
        scenario()
        return _counters.changed(before, _counters.read_counters())

    return nschild.run(measured, mode=isolation_mode(), marker=False).result


def connected_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", PORT))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", PORT))
        server, _ = listener.accept()
    return client, server


def test_counters_are_named_as_nstat_names_them():
    assert _counters.parse_counters(NETSTAT + SNMP) == {
        "TcpExtSyncookiesSent": 0, "TcpExtTCPAbortOnData": 3, "TcpExtTCPAbortOnClose": 1, "IpExtInNoRoutes": 0,
        "IpExtInOctets": 1200, "TcpRtoAlgorithm": 1, "TcpMaxConn": -1, "TcpActiveOpens": 5, "TcpOutRsts": 2,
        "TcpCurrEstab": 0}


def test_changed_lists_only_the_tcp_counters_that_moved():
    before = _counters.parse_counters(NETSTAT + SNMP)
    after = dict(before, TcpExtTCPAbortOnData=4, IpExtInOctets=1300, TcpOutRsts=3, TcpCurrEstab=0)
    assert _counters.changed(before, after) == {"TcpExtTCPAbortOnData": 1, "TcpOutRsts": 1}
    assert _counters.changed(before, after, groups=())["IpExtInOctets"] == 100


def test_a_reading_has_the_counters_the_pages_cite():
    reading = _counters.read_counters()
    for name in ("TcpExtTCPAbortOnData", "TcpExtTCPAbortOnClose", "TcpExtTCPAbortOnLinger",
                 "TcpExtTCPAbortOnTimeout", "TcpExtListenOverflows", "TcpExtTCPChallengeACK", "TcpActiveOpens",
                 "TcpOutRsts", "TcpEstabResets"):
        assert name in reading


def close_with_unread_data() -> None:
    client, server = connected_pair()
    client.send(b"unread")
    select.select([server], [], [], 5)
    server.close()
    client.close()


def test_close_with_unread_data_counts_abort_on_close_in_its_own_namespace_only():
    moved = counted(close_with_unread_data)
    assert moved["TcpExtTCPAbortOnClose"] == 1
    assert moved["TcpOutRsts"] == 1 and moved["TcpActiveOpens"] == 1 and moved["TcpPassiveOpens"] == 1
    assert moved["TcpEstabResets"] == 2  # both ends left ESTABLISHED for CLOSE by a reset


def test_data_after_the_peer_closed_counts_abort_on_data():
    def seed():
        client, server = connected_pair()
        # kept a full socket in FIN-WAIT-2 too (tcp_close()), should the delayed ACK of its FIN
        # leave before the byte: then a timewait socket would reset it, counting nothing
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_LINGER2, 120)
        server.close()
        client.send(b"x")
        client.close()

    assert counted(seed)["TcpExtTCPAbortOnData"] == 1


def test_a_full_accept_queue_counts_listen_overflows():
    def overflow():
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", PORT))
            listener.listen(0)
            clients = [socket.socket() for _ in range(3)]
            for c in clients:
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", PORT))
            for c in clients:
                c.close()

    assert counted(overflow)["TcpExtListenOverflows"] >= 1


def test_tcp_info_of_a_connection_with_unacknowledged_and_unsent_data():
    def info():
        client, server = connected_pair()
        idle = _counters.tcp_info(client)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        try:
            while True:
                client.send(b"x" * 65536)
        except BlockingIOError:
            pass
        return idle, _counters.tcp_info(client), _counters.tcp_info(server)

    idle, full, server = nschild.run(info, mode=isolation_mode(), marker=False).result
    assert (idle.state, idle.unacked, idle.notsent_bytes, idle.retransmits) == (State.ESTABLISHED, 0, 0, 0)
    assert idle.rto >= 200_000 and idle.snd_mss > 0
    assert full.notsent_bytes > 0, "the peer's full window holds back data"
    assert server.state is State.ESTABLISHED


def test_tcp_info_of_a_listening_socket():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert _counters.tcp_info(listener).state is State.LISTEN


def test_tcp_info_from_an_older_kernel_leaves_the_newer_fields_none():
    with socket.socket() as s:
        raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _counters.TCP_INFO_SIZE)
    old = _counters.parse_tcp_info(raw[:104])  # Linux 2.6's struct: up to tcpi_total_retrans
    assert old.state is State.CLOSE and old.total_retrans == 0
    assert old.pacing_rate is None and old.notsent_bytes is None and old.total_rto_time is None
    with pytest.raises(ValueError, match="shorter than any"):
        _counters.parse_tcp_info(raw[:100])


def test_tcp_info_layout_matches_the_running_kernels_btf():
    try:
        btf = _bpf.BTF.load()
    except OSError as e:
        pytest.skip(f"no readable kernel BTF: {e}")
    members = {name.removeprefix("tcpi_"): offset for name, _t, offset in btf._members(btf.struct_id("tcp_info"))}
    ours = {name: offset for name, (offset, _code) in _counters._OFFSETS.items() if not name.startswith("_")}
    assert {name: members.get(name) for name in ours} == ours
    newer = set(members) - set(ours) - {"snd_wscale", "rcv_wscale", "delivery_rate_app_limited",
                                        "fastopen_client_fail"}
    assert not newer, f"this kernel's struct tcp_info has fields we do not read yet: {sorted(newer)}"


def test_counters_and_tcp_info_need_no_privilege(unprivileged):
    code = (
        "import socket\n"
        "from socklab import _counters, _netns\n"
        "_netns.enter('userns+netns')\n"
        "before = _counters.read_counters()\n"
        "l = socket.socket(); l.bind(('127.0.0.1', 4321)); l.listen()\n"
        "c = socket.create_connection(('127.0.0.1', 4321)); a, _ = l.accept()\n"
        "print(_counters.tcp_info(c).state, _counters.changed(before, _counters.read_counters())['TcpActiveOpens'])\n"
    )
    done = unprivileged.run(["-c", code])
    if done.returncode != 0 and "PermissionError" in done.stderr and os.environ.get("CI") != "true":
        pytest.skip("this machine refuses unprivileged user namespaces")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ESTABLISHED", "1"]


def test_struct_tcp_info_size_is_what_this_module_asks_for():
    assert struct.calcsize("@" + "".join(code for _n, code in _counters._TCP_INFO)) == _counters.TCP_INFO_SIZE
