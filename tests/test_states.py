import os
import socket
import struct

import pytest

from builders import row as tcp_row
from socklab import Endpoint, State, _states


def inet_diag_msg(state, sport, dport, src, dst, rq, wq, timer=0, expires=0, inode=7, family=socket.AF_INET):
    raw_src = socket.inet_pton(family, src).ljust(16, b"\0")
    raw_dst = socket.inet_pton(family, dst).ljust(16, b"\0")
    return (struct.pack("=BBBB", family, state, timer, 0) + struct.pack(">HH", sport, dport)
            + raw_src + raw_dst + struct.pack("=I8s", 0, b"") + struct.pack("=IIIII", expires, rq, wq, 0, inode))


def test_inet_diag_close_wait_row_reads_like_ss():
    row = _states.parse_inet_diag_msg(inet_diag_msg(8, 4321, 50000, "127.0.0.1", "127.0.0.1", 1, 0))
    assert row == tcp_row("CLOSE_WAIT", "127.0.0.1:4321", "127.0.0.1:50000", recv_q=1, inode=7)
    assert row.state.ss == "CLOSE-WAIT"


def test_inet_diag_listen_row_has_wildcard_peer_and_backlog():
    row = _states.parse_inet_diag_msg(inet_diag_msg(10, 4321, 0, "127.0.0.1", "0.0.0.0", 0, 1))
    assert (row.state, row.send_q, str(row.peer)) == (State.LISTEN, 1, "0.0.0.0:*")


def test_inet_diag_ipv6_time_wait_row_has_timer():
    msg = inet_diag_msg(6, 50000, 4321, "::1", "::1", 0, 0, timer=3, expires=59_800, family=socket.AF_INET6)
    row = _states.parse_inet_diag_msg(msg)
    assert (str(row.local), str(row.peer), row.timer) == ("[::1]:50000", "[::1]:4321", "timewait,60sec,0")
    assert row.local == Endpoint(socket.AF_INET6, "::1", 50000)


@pytest.mark.parametrize(("ms", "text"), [(59_800, "timewait,60sec,0"), (200, "timewait,200ms,0"),
                                          (61_000, "timewait,61sec,0"), (1000, "timewait,1sec,0")])
def test_format_timer_matches_ss_units(ms, text):
    assert _states.format_timer(3, ms) == text


def test_a_timer_set_to_a_minute_prints_the_same_a_millisecond_later():
    assert _states.format_timer(3, 60_000) == _states.format_timer(3, 59_999) == "timewait,60sec,0"


def test_format_timer_is_empty_without_timer():
    assert _states.format_timer(0, 1234) == ""


def test_unix_diag_row_reads_queue_and_peer():
    attrs = struct.pack("=HH", 8, 2) + struct.pack("=I", 99) + struct.pack("=HH", 12, 4) + struct.pack("=II", 3, 0)
    msg = struct.pack("=BBBBI8s", socket.AF_UNIX, socket.SOCK_STREAM, 1, 0, 98, b"") + attrs
    row = _states.parse_unix_diag_msg(msg)
    assert (row.netid, row.state, row.recv_q, str(row.local), str(row.peer)) == (
        "u_str", State.ESTABLISHED, 3, "* 98", "* 99")


def test_unix_diag_ignores_datagram_sockets():
    msg = struct.pack("=BBBBI8s", socket.AF_UNIX, socket.SOCK_DGRAM, 7, 0, 5, b"")
    assert _states.parse_unix_diag_msg(msg) is None


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:10E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4333 1 0
   1: 0100007F:C350 0100007F:10E1 05 00000000:00000000 03:00001770 00000000     0        0 0 1 0
   2: 0100007F:10E1 0100007F:C350 08 00000000:00000001 00:00000000 00000000     0        0 4335 1 0
"""


def test_proc_net_tcp_fallback_parses_states_queues_and_timers():
    rows = _states.parse_proc_net_tcp(PROC_NET_TCP)
    assert [(r.state.ss, r.recv_q, str(r.local), str(r.peer)) for r in rows] == [
        ("LISTEN", 0, "127.0.0.1:4321", "0.0.0.0:*"),
        ("FIN-WAIT-2", 0, "127.0.0.1:50000", "127.0.0.1:4321"),
        ("CLOSE-WAIT", 1, "127.0.0.1:4321", "127.0.0.1:50000"),
    ]
    assert rows[1].timer == "timewait,60sec,0"


def test_snapshot_sees_a_live_listener_like_ss():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(3)
        port = s.getsockname()[1]
        rows = [r for r in _states.snapshot() if str(r.local) == f"127.0.0.1:{port}"]
    assert [(r.state, r.send_q) for r in rows] == [(State.LISTEN, 3)]


def test_snapshot_sees_a_socketpair_and_its_queue():
    a, b = socket.socketpair()
    with a, b:
        a.send(b"xyz")
        ino = {r.inode: r for r in _states.unix_stream_rows()}
        row = ino[os.fstat(b.fileno()).st_ino]
    assert (row.state, row.recv_q) == (State.ESTABLISHED, 3)
