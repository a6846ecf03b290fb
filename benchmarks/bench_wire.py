"""What two hosts cost: a two-host run against a one-namespace run (median wall times).

Rows, each one whole ``socklab.run`` (fork, namespace, capture on lo, flush):
- one namespace: listen, connect, accept, close on 127.0.0.1;
- two hosts, no delay: the same calls across the link, with its setup and teardown;
- two hosts, 25 ms each way: the same, where the handshake alone takes a 50 ms round trip.

Usage: python benchmarks/bench_wire.py [--repeat N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

import socklab
from socklab._hosts import two_hosts


def one_namespace(lab: socklab.Lab) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 4321))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", 4321))
        server, _ = listener.accept()
        client.close()
        server.close()


def across(delay: float):
    def scenario(lab: socklab.Lab) -> None:
        with two_hosts(delay=delay) as net:
            with net.server:
                listener = socket.socket()
                listener.bind(("0.0.0.0", 4321))
                listener.listen()
            with net.client:
                client = socket.create_connection(("192.0.2.2", 4321))
            server, _ = listener.accept()
            for s in (client, server, listener):
                s.close()
    return scenario


def median_ms(scenario, repeat: int) -> tuple[float, float, float]:
    socklab.run(scenario)  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        socklab.run(scenario)
        times.append((time.perf_counter() - start) * 1000)
    q = statistics.quantiles(times, n=10)
    return statistics.median(times), q[0], q[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(f"{socklab.probe().describe()}; median of {args.repeat} (10th-90th percentile), ms")
    for name, scenario in (("one namespace", one_namespace), ("two hosts, no delay", across(0.0)),
                           ("two hosts, 25 ms each way", across(0.025))):
        median, low, high = median_ms(scenario, args.repeat)
        print(f"{name:28} {median:8.1f}   ({low:.1f}-{high:.1f})")


if __name__ == "__main__":
    main()
