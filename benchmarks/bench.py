"""What observation costs: median wall times, printed as a table.

Rows:
- empty scenario: fork, namespace, lo up, capture open and flushed, nothing else;
- the seed's scenario (close, send, RST, send) observed, beside the same calls
  bare in this process with no observation (the baseline);
- the seed's scenario with the kernel's events recorded (as root) and without:
  what recording adds to a run, after its one-time start-up;
- the seed's scenario on two hosts joined by a link with no delay, against one
  namespace: what the topology (three namespaces, veths, the relay) costs;
- the whole gallery: every example script executed in this process, as the
  docs build does (HTML mode, nothing printed).

Usage: python benchmarks/bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import scenarios  # noqa: E402
import socklab  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    fn()  # warm up (imports, the namespace probe)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def gallery() -> None:
    os.environ["SOCKLAB_OUTPUT"] = "html"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for path in sorted((ROOT / "examples").glob("*/*.py")):
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(path), run_name="__main__")
        plt.close("all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    iso = socklab.probe()
    n_examples = len(list((ROOT / "examples").glob("*/*.py")))
    rows = [
        ("empty scenario (fork, netns, capture start+stop)", median_ms(lambda: socklab.run(scenarios.empty),
                                                                      args.repeat), 0.0),
        ("seed scenario: close, send, RST, send", median_ms(lambda: socklab.run(scenarios.close_then_send),
                                                          args.repeat),
         median_ms(scenarios.bare_close_then_send, args.repeat * 10)),
        ("seed scenario, kernel events recorded (vs not)",
         median_ms(lambda: socklab.run(scenarios.close_then_send), args.repeat),
         median_ms(lambda: socklab.run(scenarios.close_then_send, kernel_events=False), args.repeat)),
        ("seed scenario on two hosts, no delay (vs one namespace)",
         median_ms(lambda: socklab.run(scenarios.close_then_send_two_hosts, wire=socklab.Wire(delay=0)),
                   args.repeat),
         median_ms(lambda: socklab.run(scenarios.close_then_send), args.repeat)),
        (f"whole gallery ({n_examples} examples, in process)", median_ms(gallery, max(3, args.repeat // 10)),
         None),
    ]
    print(f"socklab bench: Linux {os.uname().release}, isolation {iso.mode}, capture {iso.capture}, "
          f"{os.cpu_count()} CPUs, median of {args.repeat} runs\n")
    print(f"{'what':52} {'observed ms':>12} {'bare ms':>9} {'added ms':>9}")
    for name, observed, bare in rows:
        bare_text = "" if bare is None else f"{bare:9.3f}"
        added = "" if bare is None else f"{observed - bare:9.1f}"
        print(f"{name:52} {observed:12.1f} {bare_text:>9} {added:>9}")


if __name__ == "__main__":
    main()
