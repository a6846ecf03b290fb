"""What the recorder's BPF programs cost per tracepoint hit, by case (the kernel's own bpf_stats).

``bpf(BPF_ENABLE_STATS)`` makes the kernel time every BPF program run while its
file descriptor is open (``run_time_ns``, ``run_cnt`` in ``bpf_prog_info``);
this reads both for the recorder's programs around a burst of loopback
connections (connect, accept, close with a reset: about 10 hits each), so
each row is nanoseconds per hit, whatever else the machine runs meanwhile.

Rows:
- not watching: the cheap exit every hit on the machine takes between runs;
- watching one or four other namespaces, the hits in this one: the namespace is
  read and compared with each watched slot, then nothing is recorded;
- matching: the connections are in the watched namespace (slot 0) or in its
  fourth (slot 3, a host's), recorded; the machine's other hits meanwhile are
  in the average too (the last column says how many hits were recorded).

Usage (root): python benchmarks/kprogram.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

import nschild  # noqa: E402
from socklab import _bpf, _kernel, _netns, _rtnl  # noqa: E402

BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 32, 0


def connections(n: int) -> None:
    """n loopback connections in the calling thread's namespace, each closed with a reset."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        for _ in range(n):
            with socket.create_connection(listener.getsockname()) as c:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                listener.accept()[0].close()


def parked(n: int) -> tuple[list[int], Callable[[], None]]:
    """n children waiting in fresh namespaces: the namespaces' inodes, and how to let the children go."""
    kids = []
    for _ in range(n):
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                _netns.unshare(_netns.CLONE_NEWNET)
                os.write(ready_w, b"r")
                os.read(go_r, 1)
            finally:
                os._exit(0)
        os.close(go_r)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        kids.append((pid, go_w))

    def release() -> None:
        for pid, go_w in kids:
            os.write(go_w, b"g")  # not a close: the later children hold copies of this pipe's write end
            os.close(go_w)
            os.waitpid(pid, 0)

    return [_kernel.netns_inode(pid) for pid, _ in kids], release


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rec = _kernel.recorder()
    if isinstance(rec, _kernel.Unavailable):
        sys.exit(rec.describe())
    btf = _bpf.BTF.load()
    at_time, at_count = btf.offset("bpf_prog_info.run_time_ns"), btf.offset("bpf_prog_info.run_cnt")

    def totals() -> tuple[int, int]:
        infos = [_bpf.prog_info(fd, 256) for fd in rec._progs]
        return (sum(struct.unpack_from("<Q", i, at_time)[0] for i in infos),
                sum(struct.unpack_from("<Q", i, at_count)[0] for i in infos))

    rows: dict[str, list[tuple[float, int, int]]] = {}

    def measure(name: str, fn: Callable[[], object]) -> None:
        (t0, c0), (m0, _r) = totals(), rec.stats()
        fn()
        (t1, c1), (m1, _r) = totals(), rec.stats()
        rows.setdefault(name, []).append(((t1 - t0) / max(1, c1 - c0), c1 - c0, m1 - m0))

    stats = _bpf.bpf(BPF_ENABLE_STATS, struct.pack("<I", BPF_STATS_RUN_TIME))
    try:
        for _ in range(args.rounds):
            measure("not watching", lambda: connections(2000))
            inodes, release = parked(4)
            try:
                rec.watch(inodes[0])
                measure("watching 1 other namespace", lambda: connections(2000))
                rec.cancel()
                rec.watch(inodes[0], hosts={inodes[1]: "a", inodes[2]: "b", inodes[3]: "c"})
                measure("watching 4 other namespaces", lambda: connections(2000))
                rec.cancel()
            finally:
                release()
            measure("matching slot 0 (the run's namespace)", lambda: nschild.run(lambda: connections(300), rec))
            measure("matching slot 3 (a host's namespace)", lambda: _HostRun().run(rec))
    finally:
        os.close(stats)
    print(f"BPF program run time per tracepoint hit (bpf_stats), Linux {os.uname().release}, "
          f"median of {args.rounds} rounds")
    for name, values in rows.items():
        ns = statistics.median(v[0] for v in values)
        hits, matched = (int(statistics.median(v[i] for v in values)) for i in (1, 2))
        print(f"  {name:40} {ns:6.0f} ns   (~{hits} hits a round, {matched} of them recorded)")


class _HostRun:
    """In the child: three host namespaces (slots 1-3); the connections run in the last one."""

    def make(self) -> dict[int, str]:
        self.fds = [_rtnl.new_namespace() for _ in range(3)]
        with _rtnl.inside(self.fds[-1]):
            _netns.set_link_up("lo")
        return {os.fstat(fd).st_ino: f"host{i}" for i, fd in enumerate(self.fds, start=1)}

    def scenario(self) -> None:
        with _rtnl.inside(self.fds[-1]):
            connections(300)

    def run(self, rec: _kernel.Recorder) -> None:
        nschild.run(self.scenario, rec, hosts=self.make)


if __name__ == "__main__":
    main()
