"""Run the seed's scenario N times (optionally with both cores busy) and count the outcomes.

Usage: python benchmarks/repeat.py [-n 1000] [--load]
Prints how many runs gave each (flow, call outcomes, trace text without times, socket tables)
combination.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import scenarios  # noqa: E402
import socklab  # noqa: E402


def burn(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--load", action="store_true", help="keep every core busy with a spinning process")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    burners = [ctx.Process(target=burn, args=(stop,)) for _ in range(os.cpu_count() or 1)] if args.load else []
    for p in burners:
        p.start()
    counts: collections.Counter = collections.Counter()
    start = time.perf_counter()
    try:
        for i in range(args.n):
            run = socklab.run(scenarios.close_then_send)
            trace = "\n".join(p.line(0).split(" ", 2)[-1] for p in run.packets)
            counts[(tuple(run.flow()), tuple(c.outcome for c in run.calls), trace + "\n" + str(run.states()))] += 1
            if (i + 1) % 100 == 0:
                print(f"  {i + 1}/{args.n} runs", file=sys.stderr)
    finally:
        stop.set()
        for p in burners:
            p.join()
    elapsed = time.perf_counter() - start
    print(f"{args.n} runs in {elapsed:.1f} s, load on {len(burners)} cores: {len(counts)} distinct result(s)")
    for (flow, outcomes, trace), n in counts.most_common():
        print(f"\n{n} x flow {' '.join(flow)}; calls {outcomes}\n{trace}")


if __name__ == "__main__":
    main()
