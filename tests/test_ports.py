"""Ports: reproducible client ports that limit nothing; private ports in the host's namespace."""

import socket
import struct

import scenarios
import socklab


def clients_of_one_listener(lab):
    listener = socket.socket()
    listener.bind(("127.0.0.1", scenarios.PORT))
    listener.listen(8)
    clients = [socket.create_connection(("127.0.0.1", scenarios.PORT)) for _ in range(4)]
    six = socket.socket(socket.AF_INET6)
    six.bind(("::1", scenarios.PORT))
    six.listen(1)
    clients.append(socket.create_connection(("::1", scenarios.PORT)))
    lab.note(" ".join(str(c.getsockname()[1]) for c in clients))


def test_every_client_of_one_listener_connects_from_the_next_port_from_50000():
    first = socklab.run(clients_of_one_listener)
    assert first.notes == ["50000 50001 50002 50003 50000"]  # the IPv6 client has a peer of its own
    assert socklab.run(clients_of_one_listener).notes == first.notes


def test_a_refused_connect_still_fails_as_the_kernel_says():
    def refused(lab):
        lab.call(socket.socket().connect, ("127.0.0.1", scenarios.PORT), label="connect")
        lab.call(socket.socket().connect_ex, ("127.0.0.1", scenarios.PORT), label="connect_ex")

    run = socklab.run(refused)
    assert [c.outcome for c in run.calls] == ["ECONNREFUSED", "111"]


def test_a_scenarios_own_port_range_is_left_alone():
    def own_range(lab):
        listener = socket.create_server(("127.0.0.1", 4321))
        first = socket.create_connection(("127.0.0.1", 4321))
        lab.record("first", first.getsockname()[1])
        second = socket.socket()
        second.setsockopt(socket.SOL_IP, 51, struct.pack("I", 50000 << 16 | 50000))  # IP_LOCAL_PORT_RANGE
        lab.call(second.connect, ("127.0.0.1", 4321), label="connect from 50000 only")
        assert listener

    run = socklab.run(own_range)
    assert run.value("first") == 50000
    run.expect(calls={"client: connect from 50000 only": "EADDRNOTAVAIL"})
