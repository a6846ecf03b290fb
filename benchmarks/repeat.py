"""Run example pages many times and count how often each run repeats exactly (flags and outcomes).

Every ``socklab.run`` an example makes is recorded as (packet flow, call outcomes, reset reasons);
after N executions of the page, each run must have had one result. Times, ports and
sequence numbers are not compared: the flow is ``"client [S]"`` lines, the outcomes are
values or errno names.

Usage: python benchmarks/repeat.py [-n 100] examples/14_across_a_network/*.py
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import runpy
import sys
import time
from pathlib import Path

import socklab


def signature(run: socklab.Run) -> tuple:
    return (tuple(run.flow()), tuple(f"{c.label}={c.outcome}" for c in run.calls),
            tuple(f"{who}:{reason}" for who, reason, _ in run.resets()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("pages", nargs="+", type=Path)
    args = parser.parse_args()
    os.environ["SOCKLAB_OUTPUT"] = "html"  # nothing printed
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    original = socklab.run

    def recording(scenario, **kwargs):  # type: ignore[no-untyped-def]
        run = original(scenario, **kwargs)
        seen[(page.name, run.name)][signature(run)] += 1
        return run

    socklab.run = recording
    failed = 0
    for page in [p.resolve() for p in args.pages]:
        start = time.monotonic()
        for _ in range(args.n):
            cwd = os.getcwd()
            os.chdir(page.parent)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    runpy.run_path(str(page), run_name="__main__")
            finally:
                os.chdir(cwd)
                plt.close("all")
        print(f"{page}: {args.n} executions in {time.monotonic() - start:.0f} s", file=sys.stderr)
    print(f"{'page':45} {'run':40} {'identical':>10}")
    for (page_name, run_name), results in sorted(seen.items()):
        common, count = results.most_common(1)[0]
        total = sum(results.values())
        print(f"{page_name:45} {run_name:40} {count:>4}/{total:<5}")
        if count != total:
            failed += 1
            for other, n in results.items():
                if other != common:
                    print(f"    {n} x differs: {other}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
