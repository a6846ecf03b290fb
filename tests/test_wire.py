"""Two hosts and the link between them: delay, loss, held packets, a scripted peer, sysctls, cleanup.

Every scenario runs through ``socklab.run``, so the topology is built inside
the run's own isolated child (never in the test process's namespace), and
sends what it saw home with ``lab.record``.
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading

import pytest

import socklab
from socklab import _timers
from socklab._hosts import WireUnavailable, sent_by, two_hosts
from socklab._wire import CUT, DELIVERED, DROPPED, INJECTED

PORT = 4321
CLIENT, SERVER = "192.0.2.1", "192.0.2.2"
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)


@pytest.fixture(scope="module", autouse=True)
def wire_available():
    """Skip (visibly) where this machine refuses two hosts; never on CI, where it must work."""
    def probe(lab):
        with two_hosts(delay=0):
            pass

    try:
        socklab.run(probe)
    except socklab.ScenarioError as e:
        if "WireUnavailable" not in str(e) or os.environ.get("CI") == "true":
            raise
        pytest.skip(f"two hosts are not possible here: {str(e).splitlines()[0]}")


def connected(net, ipv6=False):
    """An established client/server pair across the link, and the listener."""
    with net.server:
        listener = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET)
        listener.bind(("::" if ipv6 else "0.0.0.0", PORT))
        listener.listen()
    with net.client:
        client = socket.create_connection((net.server.ipv6 if ipv6 else SERVER, PORT), timeout=5)
    server, _ = listener.accept()
    return listener, client, server


def segments(frames):
    """(sender, flags, fate) of every TCP segment on the link."""
    return [(f.sender, f.packet.flags, f.fate) for f in frames if f.packet is not None]


def test_round_trip_time_is_twice_the_one_way_delay():
    def scenario(lab):
        with two_hosts(delay=0.025) as net:
            listener, client, server = connected(net)
            for s in (listener, client, server):
                s.close()
            lab.record("frames", net.frames())
            lab.record("realtime", net.settings()["realtime relay"])

    run = socklab.run(scenario)
    frames = run.value("frames")
    syn = next(f for f in frames if f.packet is not None and f.packet.flags == "S")
    synack = next(f for f in frames if f.packet is not None and f.packet.flags == "S.")
    # Measured at load 8 on 2 cores: late by at most 0.4 ms with a real-time relay, by up to 20 ms
    # without one (a root without CAP_SYS_NICE, as in some containers).
    late = 0.005 if run.value("realtime") else 0.030
    # the client's round trip, on the link's clock: its SYN entering, the SYN-ACK reaching it
    _timers.within("SYN to SYN-ACK", syn.sent_ns, synack.arrived_ns, 0.050, late)
    assert all(abs(f.transit - 0.025) < late for f in frames if f.fate == DELIVERED)
    assert [(s, flags) for s, flags, _ in segments(frames)][:3] == [
        ("client", "S"), ("server", "S."), ("client", ".")]


def test_a_dead_server_makes_send_end_in_etimedout_under_tcp_user_timeout():
    def scenario(lab):
        with two_hosts(delay=0.025) as net:
            listener, client, server = connected(net)
            client.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 1000)
            net.link.drop(sent_by(net.server))  # the server's host died: nothing comes back
            lab.call(client.send, b"hello", label="send")
            client.settimeout(5)
            lab.call(client.recv, 100, label="recv")
            lab.record("frames", net.frames())
            for s in (listener, client, server):
                s.close()

    run = socklab.run(scenario)
    assert run.call("recv").errno == "ETIMEDOUT"
    frames = run.value("frames")
    data = [f for f in frames if f.packet is not None and f.packet.length]
    assert len(data) >= 3, "the data was retransmitted with backoff"
    assert all(f.fate == DELIVERED for f in data)  # they reach the server; its ACKs die
    answers = [f for f in frames[data[0].index:] if f.sender == "server" and f.packet is not None]
    assert answers and {f.fate for f in answers} == {DROPPED}
    # data[1] is the tail loss probe (RFC 8985; tcp_schedule_loss_probe: 2 * SRTT + TCP_RTO_MIN with one
    # segment out, but never later than the RTO, at least SRTT + 200 ms), data[2] the first retransmission
    # by the RTO; TCP_USER_TIMEOUT counts from that one (tp->retrans_stamp), not from the first send:
    # measured here 1.53 s after the send, 1.28 s with the loss probe off (tcp_early_retrans=0).
    _timers.within("ETIMEDOUT after the first RTO retransmission", data[2].sent_ns, run.call("recv").time_ns,
                   1.0, 0.3)
    probe_after = (data[1].sent_ns - data[0].sent_ns) / 1e9
    assert 0.050 + _timers.TCP_RTO_MIN - 0.01 <= probe_after <= 2 * 0.050 + _timers.TCP_RTO_MIN + 0.03


def test_a_dropped_first_fin_is_retransmitted():
    def scenario(lab):
        with two_hosts(delay=0.010) as net:
            listener, client, server = connected(net)
            net.link.drop(lambda p: "F" in p.flags, count=1)
            client.close()
            net.link.wait_packet("F.", sender="client", after=1, fate=DELIVERED)
            net.link.wait_packet(".", sender="server", fate=DELIVERED)
            with net.server:
                lab.wait_state(server, "CLOSE_WAIT")
            lab.record("frames", net.frames())
            server.close()
            listener.close()

    frames = socklab.run(scenario).value("frames")
    fins = [f for f in frames if f.packet is not None and "F" in f.packet.flags]
    assert [(f.sender, f.fate) for f in fins] == [("client", DROPPED), ("client", DELIVERED)]
    assert fins[0].packet.seq == fins[1].packet.seq
    assert (fins[1].sent_ns - fins[0].sent_ns) / 1e9 >= _timers.TCP_RTO_MIN  # after an RTO


def test_held_fins_released_together_make_a_simultaneous_close():
    def scenario(lab):
        with two_hosts(delay=0.010) as net:
            listener, client, server = connected(net)
            ends = {"client": (f"{CLIENT}:50000", f"{SERVER}:{PORT}"),
                    "server": (f"{SERVER}:{PORT}", f"{CLIENT}:50000")}
            fins = net.link.hold(lambda p: "F" in p.flags, count=2)
            client.close()
            server.close()
            net.link.wait_held(2)
            acks = net.link.hold(lambda p: p.flags == ".", count=2)  # keep both in CLOSING to see it
            net.link.release()
            net.link.wait_held(2)
            for name in ("client", "server"):
                with net.hosts()[name]:
                    lab.wait_state(ends[name], "CLOSING")
                    lab.snapshot(f"{name} while the ACKs are held")
            net.link.release()
            for name in ("client", "server"):
                with net.hosts()[name]:
                    lab.wait_state(ends[name], "TIME_WAIT")
            lab.record("rules", (fins.matched, acks.matched))
            lab.record("frames", net.frames())
            listener.close()

    run = socklab.run(scenario)
    assert run.value("rules") == (2, 2)
    for name in ("client", "server"):
        rows = run.snapshot(f"{name} while the ACKs are held").rows
        assert [r.state.name for r in rows if r.local.port in (PORT, 50000) and r.state.name != "LISTEN"] == [
            "CLOSING"]
    tail = segments(run.value("frames"))[-4:]
    assert sorted(tail) == [("client", ".", DELIVERED), ("client", "F.", DELIVERED),
                            ("server", ".", DELIVERED), ("server", "F.", DELIVERED)]


@pytest.mark.parametrize("ipv6", [False, True], ids=["IPv4", "IPv6"])
def test_an_in_window_rst_draws_a_challenge_ack_and_an_out_of_window_one_nothing(ipv6):
    def scenario(lab):
        with two_hosts(delay=0.005) as net:
            listener, client, server = connected(net, ipv6)
            synack = net.link.wait_packet("S.", sender="server").packet
            rcv_nxt = (synack.seq + 1) % 2**32  # what the client expects next from the server
            # RFC 5961 section 3.2: an RST outside the window is dropped silently; one inside it but
            # not exactly at RCV.NXT is answered with a "challenge ACK" (tcp_validate_incoming)
            net.forge(net.server, "R", sport=PORT, dport=50000, seq=rcv_nxt + 2**30, ipv6=ipv6)
            net.forge(net.server, "R", sport=PORT, dport=50000, seq=rcv_nxt + 1000, ipv6=ipv6)
            challenge = net.link.wait_packet(".", sender="client", after=1)
            with net.client:
                lab.wait_state(client, "ESTABLISHED")
            lab.record("rcv_nxt", rcv_nxt)
            lab.record("frames", net.frames())
            for s in (listener, client, server):
                s.close()
            assert challenge.packet.ack == rcv_nxt

    run = socklab.run(scenario)
    frames = run.value("frames")
    injected = [i for i, f in enumerate(frames) if f.fate == INJECTED]
    after = [f for f in frames[injected[0]:] if f.sender == "client" and f.packet is not None]
    assert len(injected) == 2
    assert [f.packet.flags for f in after] == ["."], "one challenge ACK, for the in-window RST only"
    assert after[0].packet.ack == run.value("rcv_nxt")


@pytest.mark.parametrize(("rfc1337", "answer"), [(0, "R"), (1, ".")])
def test_an_rst_into_time_wait_ends_it_unless_tcp_rfc1337_is_set(rfc1337, answer):
    def scenario(lab):
        with two_hosts(delay=0.002, client={"tcp_rfc1337": rfc1337}) as net:
            listener, client, server = connected(net)
            client.close()
            server.close()
            fin = net.link.wait_packet("F.", sender="server", fate=DELIVERED).packet
            with net.client:
                lab.wait_state((f"{CLIENT}:50000", f"{SERVER}:{PORT}"), "TIME_WAIT")
            # its ACK of the FIN first, or it could be read from the link after the probe and taken for the reply
            net.link.wait_packet(".", sender="client", match=lambda p: p.ack == fin.seq + 1)
            net.forge(net.server, "R", sport=PORT, dport=50000, seq=fin.seq + 1)  # exactly RCV.NXT
            # an old ACK: a TIME_WAIT socket answers it with an ACK, no socket at all with an RST
            probe = net.forge(net.server, "A", sport=PORT, dport=50000, seq=fin.seq, ack=fin.ack)
            reply = net.link.wait_packet(match=lambda p: p.frame > probe.index, sender="client")
            lab.record("reply", reply.packet.flags)
            listener.close()

    assert socklab.run(scenario).value("reply") == answer


def test_a_cut_link_loses_what_is_sent_and_restoring_it_lets_the_retransmission_through():
    def scenario(lab):
        with two_hosts(delay=0.005) as net:
            listener, client, server = connected(net)
            net.link.cut()
            client.sendall(b"during the cut")
            net.link.wait_packet("P.", sender="client", fate=CUT)
            net.link.restore()
            server.settimeout(5)
            lab.call(server.recv, 100, label="recv")
            lab.record("frames", net.frames())
            for s in (listener, client, server):
                s.close()

    run = socklab.run(scenario)
    assert run.call("recv").value == b"during the cut"
    data = [f for f in run.value("frames") if f.packet is not None and f.packet.length]
    assert [f.fate for f in data][:2] == [CUT, DELIVERED]


def test_a_slowed_segment_is_overtaken_by_the_next_one():
    def scenario(lab):
        with two_hosts(delay=0.005) as net:
            listener, client, server = connected(net)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            net.link.slow(lambda p: p.payload == b"first", 0.100, count=1)  # longer than any stall before "second"
            client.send(b"first")
            net.link.wait_packet("P.", sender="client", match=lambda p: p.payload == b"first")
            client.send(b"second")
            server.settimeout(5)
            got = b""
            while len(got) < 11:
                got += server.recv(100)
            # the slowed original may come after a retransmission (RACK saw "second" SACKed first)
            net.link.wait_packet("P.", sender="client", match=lambda p: p.payload == b"first", fate=DELIVERED)
            lab.record("frames", net.frames())
            lab.record("received", got)
            for s in (listener, client, server):
                s.close()

    run = socklab.run(scenario)
    data = [f for f in run.value("frames") if f.packet is not None and f.packet.length]
    arrived = sorted(data[:2], key=lambda f: f.arrived_ns)
    assert [f.packet.payload for f in arrived] == [b"second", b"first"]
    assert run.value("received") == b"firstsecond"  # TCP puts them back in order


def test_dropped_syns_make_connect_time_out_like_a_firewall():
    def scenario(lab):
        with two_hosts(delay=0.005) as net:
            with net.server:
                listener = socket.socket()
                listener.bind(("0.0.0.0", PORT))
                listener.listen()
            net.link.drop(lambda p: p.flags == "S")
            with net.client:
                client = socket.socket()
            client.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 500)
            lab.call(client.connect, (SERVER, PORT), label="connect")
            net.link.wait_packet("S", sender="client", after=1)  # sent just before connect() gives up
            lab.record("frames", net.frames())
            client.close()
            listener.close()

    run = socklab.run(scenario)
    assert run.call("connect").errno == "ETIMEDOUT"
    syns = [f for f in run.value("frames") if f.packet is not None and f.packet.flags == "S"]
    assert {f.fate for f in syns} == {DROPPED}
    connect = run.call("connect")
    # The SYN's first retransmission timer is not shortened to the user timeout: it fires at
    # TCP_TIMEOUT_INIT (1 s) and retransmits (a timeout needs a retransmission first); the next
    # timer is clamped to the time left, none, and fires at once: ETIMEDOUT just after 1 s.
    assert len(syns) == 2
    _timers.within("the SYN's retransmission", syns[0].sent_ns, syns[1].sent_ns, _timers.TCP_TIMEOUT_INIT, 0.2)
    # the call's return is stamped in user space: on a loaded machine (load 9 on 2 cores) it was
    # once 0.2 s behind the kernel's decision, so the claim takes the usual 0.3 s tolerance
    _timers.within("connect() under TCP_USER_TIMEOUT 500 ms", connect.start_ns, connect.time_ns,
                   _timers.TCP_TIMEOUT_INIT, 0.3)


def test_sysctls_apply_to_their_host_only_and_are_returned_as_data():
    def scenario(lab):
        with two_hosts(delay=0, sysctls={"tcp_retries2": 5}, client={"tcp_fin_timeout": 7, "somaxconn": 16},
                       server={"tcp_fin_timeout": 9, "net.ipv4.tcp_rfc1337": 1}) as net:
            lab.record("settings", net.settings())
            lab.record("read", {h.name: (h.sysctl("tcp_fin_timeout"), h.sysctl("somaxconn"),
                                         h.sysctl("tcp_rfc1337"), h.sysctl("tcp_retries2"))
                                for h in net.hosts().values()})
        with open("/proc/sys/net/ipv4/tcp_fin_timeout") as f:
            lab.record("scenario's own", f.read().strip())

    run = socklab.run(scenario)
    assert run.value("read") == {"client": ("7", "16", "0", "5"), "server": ("9", "4096", "1", "5")}
    assert run.value("scenario's own") == "60"
    settings = run.value("settings")
    assert settings["hosts"]["client"]["sysctls"] == {
        "net.ipv4.tcp_retries2": "5",
        "net.ipv4.tcp_fin_timeout": "7", "net.core.somaxconn": "16"}
    assert settings["hosts"]["server"]["ipv4"] == SERVER and settings["delay"] == 0


def test_ipv6_crosses_the_link_between_documentation_addresses():
    def scenario(lab):
        with two_hosts(delay=0.002) as net:
            with net.server:
                listener = socket.socket(socket.AF_INET6)
                listener.bind(("::", PORT))
                listener.listen()
            with net.client:
                client = socket.create_connection(("2001:db8::2", PORT), timeout=5)
            server, peer = listener.accept()
            lab.record("peer", peer[0])
            lab.record("packets", [p.line(0) for p in net.packets()])
            for s in (listener, client, server):
                s.close()

    run = socklab.run(scenario)
    assert run.value("peer") == "2001:db8::1"
    assert "IP6 2001:db8::1.50000 > 2001:db8::2.4321: Flags [S]" in run.value("packets")[0]


def test_everything_is_cleaned_up_when_the_scenario_raises_inside_a_host():
    def scenario(lab):
        def state():
            return (sorted(os.listdir("/proc/self/fd")), [t.name for t in threading.enumerate()],
                    os.readlink("/proc/thread-self/ns/net"), __import__("sys").getswitchinterval())

        before = state()
        try:
            with two_hosts(delay=0.010) as net:
                listener, client, server = connected(net)
                net.link.hold(lambda p: "F" in p.flags)
                client.close()
                net.link.wait_held(1)
                with net.server:
                    raise ValueError("the scenario failed here")
        except ValueError:
            pass
        for s in (listener, server):
            s.close()
        lab.record("same", state() == before)
        lab.record("fates", [f.fate for f in net.frames() if f.packet is not None and "F" in f.packet.flags])

    run = socklab.run(scenario)
    assert run.value("same") is True
    assert run.value("fates") == ["lost"]  # the held FIN went down with the link


def test_a_machine_that_refuses_namespaces_gets_a_message_with_a_fix(monkeypatch):
    from socklab import _rtnl

    def refuse():
        raise PermissionError(1, "unshare(CLONE_NEWNET): Operation not permitted")

    monkeypatch.setattr(_rtnl, "new_namespace", refuse)
    with pytest.raises(WireUnavailable, match="Operation not permitted.*Fix: run as root"):
        two_hosts()


UNPRIVILEGED = textwrap.dedent("""
    import os, socket, socklab
    from socklab._hosts import two_hosts

    def scenario(lab):
        with two_hosts(delay=0.025, client={"tcp_fin_timeout": 7}) as net:
            with net.server:
                listener = socket.socket()
                listener.bind(("0.0.0.0", 4321))
                listener.listen()
            net.link.drop(lambda p: "F" in p.flags, count=1)
            with net.client:
                client = socket.create_connection(("192.0.2.2", 4321), timeout=5)
            server, _ = listener.accept()
            client.close()
            net.link.wait_packet("F.", sender="client", after=1, fate="delivered")
            lab.record("frames", net.frames())
            lab.record("settings", net.settings())
            for s in (listener, server):
                s.close()

    run = socklab.run(scenario)
    frames = run.value("frames")
    syn, synack = (next(f for f in frames if f.packet and f.packet.flags == flags) for flags in ("S", "S."))
    print(os.getuid(), run.isolation.mode, run.value("settings")["realtime relay"],
          run.value("settings")["hosts"]["client"]["sysctls"]["net.ipv4.tcp_fin_timeout"])
    print(round((synack.arrived_ns - syn.sent_ns) / 1e6))
    print(" ".join(f"{f.packet.flags}:{f.fate}" for f in frames if f.packet and "F" in f.packet.flags))
""")


def test_two_hosts_work_for_an_unprivileged_user(unprivileged):
    result = unprivileged.run(["-c", UNPRIVILEGED])
    if "WireUnavailable" in result.stderr and os.environ.get("CI") != "true":
        pytest.skip(f"this machine refuses an unprivileged user two hosts: {result.stderr.splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    ids, rtt, fins = result.stdout.splitlines()
    assert ids == "65534 userns+netns False 7"  # no real-time relay without CAP_SYS_NICE
    # up to 20 ms late a hop without real-time priority (scheduler jitter under load)
    assert 45 <= int(rtt) <= 95, f"RTT {rtt} ms for 50 ms set (no real-time priority: scheduler jitter)"
    assert fins == "F.:dropped F.:delivered"


def test_each_host_has_its_own_socket_table():
    def scenario(lab):
        with two_hosts(delay=0) as net:
            listener, client, server = connected(net)
            tables = net.sockets()
            lab.record("tables", {name: sorted((str(r.local), r.state.name) for r in rows)
                                  for name, rows in tables.items()})
            for s in (listener, client, server):
                s.close()

    assert socklab.run(scenario).value("tables") == {
        "client": [(f"{CLIENT}:50000", "ESTABLISHED")],
        "server": [("0.0.0.0:4321", "LISTEN"), (f"{SERVER}:{PORT}", "ESTABLISHED")],
    }


def test_a_misspelt_sysctl_is_named_with_the_known_ones():
    def scenario(lab):
        with two_hosts(client={"tcp_fin_timout": 5}):
            pass

    with pytest.raises(socklab.ScenarioError, match=r"SysctlError: client: sysctl net.ipv4.tcp_fin_timout = 5 "
                                                    r"was refused.*the short names are tcp_fin_timeout"):
        socklab.run(scenario)


def test_a_changed_delay_applies_to_the_frames_that_follow():
    def scenario(lab):
        with two_hosts(delay=0) as net:
            listener, client, server = connected(net)
            net.link.delay = 0.020
            client.send(b"slow now")
            server.settimeout(5)
            server.recv(100)
            lab.record("frames", net.frames())
            lab.record("realtime", net.settings()["realtime relay"])
            for s in (listener, client, server):
                s.close()

    run = socklab.run(scenario)
    late = 0.005 if run.value("realtime") else 0.020  # see test_round_trip_time_is_twice_the_one_way_delay
    frames = [f for f in run.value("frames") if f.packet is not None]
    assert frames[0].transit < late
    assert next(f for f in frames if f.packet.length).transit == pytest.approx(0.020, abs=late)


def test_across_a_round_trip_every_send_before_the_rst_arrives_succeeds():
    """The seed's scenario with 25 ms each way: the second send is made while the RST is on the link."""
    def scenario(lab):
        with two_hosts(delay=0.025) as net:
            listener, client, server = connected(net)
            lab.call(client.close, label="close")
            net.link.wait_packet(".", sender="server")  # the FIN's ACK (delayed: wait, or "a" carries it)
            with net.server:
                lab.wait_state(server, "CLOSE_WAIT")
            lab.call(server.send, b"a", socket.MSG_NOSIGNAL, label="send #1")
            net.link.wait_packet("R", sender="client")  # the RST has left the client: still 25 ms away
            lab.call(server.send, b"b", socket.MSG_NOSIGNAL, label="send #2")
            net.link.wait_packet("R", sender="client", fate=DELIVERED)
            with net.server:
                lab.wait_state(server, None)
            lab.call(server.send, b"c", socket.MSG_NOSIGNAL, label="send #3")
            lab.record("frames", net.frames())
            listener.close()

    run = socklab.run(scenario)
    assert [run.call(f"send #{n}").outcome for n in (1, 2, 3)] == ["1", "1", "EPIPE"]
    flow = [(s, flags) for s, flags, _ in segments(run.value("frames"))]
    # send #2's byte never left: Nagle holds it while "a" is unacknowledged, and the RST purges it
    assert flow[3:] == [("client", "F."), ("server", "."), ("server", "P."), ("client", "R")]


def test_held_segments_released_in_reverse_arrive_in_reverse():
    def scenario(lab):
        with two_hosts(delay=0) as net:
            listener, client, server = connected(net)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            net.link.hold(lambda p: p.length > 0, count=2)
            client.send(b"one")
            client.send(b"two")
            net.link.wait_held(2)
            net.link.release(reverse=True)
            net.link.wait_packet("P.", sender="client", after=1, fate=DELIVERED)
            net.link.wait_packet("P.", sender="client", fate=DELIVERED)
            lab.record("frames", net.frames())
            for s in (listener, client, server):
                s.close()

    data = [f for f in socklab.run(scenario).value("frames") if f.packet is not None and f.packet.length][:2]
    assert [f.packet.payload for f in sorted(data, key=lambda f: f.arrived_ns)] == [b"two", b"one"]


def test_keepalive_with_shortened_sysctls_gives_up_on_a_silent_peer():
    """tcp_keepalive_time=1, tcp_keepalive_intvl=1, tcp_keepalive_probes=1 on the client only:
    a probe after 1 s idle, none answered, ETIMEDOUT and an RST 1 s later (default: 7200 + 9 * 75 s)."""
    def scenario(lab):
        keepalive = {"tcp_keepalive_time": 1, "tcp_keepalive_intvl": 1, "tcp_keepalive_probes": 1}
        with two_hosts(delay=0.005, client=keepalive) as net:
            listener, client, server = connected(net)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            net.link.drop(sent_by(net.server))
            client.settimeout(5)
            lab.call(client.recv, 1, label="recv")
            # the RST leaves before recv() returns, but may reach the link after it
            net.link.wait_packet("R.", sender="client")
            lab.record("frames", net.frames())
            for s in (listener, client, server):
                s.close()

    run = socklab.run(scenario)
    recv = run.call("recv")
    assert recv.errno == "ETIMEDOUT"
    # after the handshake's S and ".": one probe, then the RST the keepalive timer sends as it gives up
    probes = [f for f in run.value("frames") if f.sender == "client" and f.packet is not None][2:]
    assert [f.packet.flags for f in probes] == [".", "R."]
    _timers.within("the keepalive probe after 1 s idle", recv.start_ns, probes[0].sent_ns, 1.0, 0.3)
    _timers.within("ETIMEDOUT after the unanswered probe", probes[0].sent_ns, recv.time_ns, 1.0, 0.3)


def test_waiting_for_a_dropped_segment_to_arrive_fails_at_once_naming_the_rule():
    def scenario(lab):
        with two_hosts(delay=0) as net:
            net.link.drop(lambda p: p.flags == "S", name="firewall")
            with net.client:
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex((SERVER, PORT))
            try:
                net.link.wait_packet("S", fate=DELIVERED, timeout=5)
            except TimeoutError as e:
                lab.record("error", str(e))
            client.close()

    run = socklab.run(scenario)
    assert run.value("error") == "the [S] segment from either host (after=0) will never be delivered: it was " \
                                 "dropped by rule 'firewall'"
    assert run.calls == [] and (run.snapshots == [])


def test_a_cut_link_with_an_icmp_host_unreachable_ends_in_ehostunreach_not_etimedout():
    """tcp_v4_err keeps an ICMP "host unreachable" as the socket's soft error; when TCP_USER_TIMEOUT
    gives up, tcp_write_err reports that error instead of ETIMEDOUT."""
    def scenario(lab):
        from scapy.layers.inet import ICMP, IP

        with two_hosts(delay=0.005) as net:
            listener, client, server = connected(net)
            client.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 1000)
            net.link.cut()
            client.send(b"into the void")
            lost = net.link.wait_packet("P.", sender="client", fate=CUT)
            quoted = lost.data[14:14 + 28]  # the lost datagram's IP header and first 8 bytes (RFC 792)
            net.send_to(net.client, IP(src=SERVER, dst=CLIENT) / ICMP(type=3, code=1) / quoted)
            client.settimeout(5)
            lab.call(client.recv, 100, label="recv")
            for s in (listener, client, server):
                s.close()

    assert socklab.run(scenario).call("recv").errno == "EHOSTUNREACH"
