"""What observation and the site cost: figures beside their floor, their target and issue 16's numbers.

Runs (median wall times, all measured in this one process, which first grows to the
size of a docs build, --parent-mib, since forking a large parent costs more):
- floor: fork, a new network namespace, lo up, exit; what any isolated run must pay;
- empty scenario: fork, namespace, lo up, capture open and flushed, kernel events (as
  root), nothing else; the target is at most 2x the floor;
- two forks and exits, nothing else: the supervisor and the scenario's process that every
  run has (nothing outlives a run because of them), the design's own minimum;
- the seed's scenario (close, send, RST, send) observed, beside the same calls bare in
  this process with no observation (the baseline); with the kernel's events and without;
  on two hosts joined by a link with no delay (three namespaces, veths, the relay).

Site (with --site, needs the docs dependencies; in a copy of docs/ and examples/, so the
checkout's own build is left alone):
- a clean sphinx-build (every example runs, on every core), and the same with the examples
  one after another (--serial);
- a rebuild with nothing changed, and after a one-line prose edit of a page;
- the weight of every page with its images: the heaviest, the gallery's index, all pages.

Every figure is printed beside issue 16's numbers (measured on the 12-page site) and as
a ratio; absolute times are noisy on a shared machine, ratios measured in one run less so.

Usage: python benchmarks/bench.py [--repeat N] [--parent-mib M] [--site] [--serial] [--gallery]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "docs" / "_ext")]

import scenarios  # noqa: E402
import socklab  # noqa: E402
from socklab import _netns  # noqa: E402

#: Issue 16's figures, measured on the 12-page site (2 cores, Linux 6.18).
TODAY = {"floor_ms": 2.1, "empty_ms": 15.0, "clean_s": 18.4, "nothing_s": 12.5, "all_pages_kb": 4600,
         "index_kb": 531}
#: The targets: an empty run at most 2x the floor; a clean build of 30+ pages at most 1.5x
#: today's 12-page build; no page over 300 kB.
EMPTY_MAX_RATIO, CLEAN_MAX_RATIO, PAGE_MAX_KB = 2.0, 1.5, 300


def median_ms(fn, repeat: int) -> float:
    fn()  # warm up (imports, the namespace probe)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def floor(mode: str) -> None:
    """Fork a child that enters a new network namespace, brings lo up and exits; wait for it."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _netns.enter(mode)
        except BaseException:  # noqa: BLE001 - a forked child must never return
            code = 70
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError("the floor's child could not enter a namespace")


def two_processes() -> None:
    """What every run's process tree costs before it does anything: a child (the supervisor) that
    forks a grandchild (the scenario's process), each leaving, each waited for. No namespace."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.waitpid(grandchild, 0)
        except BaseException:  # noqa: BLE001 - a forked child must never return
            code = 70
        os._exit(code)
    os.waitpid(pid, 0)


def gallery() -> None:
    os.environ["SOCKLAB_OUTPUT"] = "html"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for path in sorted((ROOT / "examples").glob("*/*.py")):
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(path), run_name="__main__")
        plt.close("all")


def grow(mib: int) -> bytearray:
    """Make this process about `mib` MiB larger, every page touched (a fork copies its page tables)."""
    ballast = bytearray(mib * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    return ballast


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def row(name: str, value: float, unit: str, today: float | None = None, ratio_to: tuple[str, float] | None = None,
        target: str = "") -> None:
    today_text = f"{today:g} {unit}" if today is not None else ""
    ratio = f"{value / ratio_to[1]:.2f}x {ratio_to[0]}" if ratio_to else ""
    print(f"{name:46} {value:10.{1 if value >= 1 else 3}f} {unit:3} {today_text:>12} {ratio:>24}  {target}")


def run_figures(args) -> None:
    iso = socklab.probe()
    ballast = grow(args.parent_mib) if args.parent_mib else None
    print(f"socklab bench: Linux {os.uname().release}, isolation {iso.mode}, capture {iso.capture}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, parent {rss_mib():.0f} MiB, "
          f"median of {args.repeat} runs\n")
    print(f"{'runs':46} {'now':>14} {'issue 16':>12} {'ratio':>24}")
    base = median_ms(lambda: floor(iso.mode), args.repeat)
    empty = median_ms(lambda: socklab.run(scenarios.empty), args.repeat)
    quiet = median_ms(lambda: socklab.run(scenarios.empty, kernel_events=False), args.repeat)
    row("floor: fork, netns, lo up", base, "ms", TODAY["floor_ms"])
    row("empty scenario", empty, "ms", TODAY["empty_ms"], ("the floor", base),
        f"target <= {EMPTY_MAX_RATIO:g}x: {'met' if empty <= EMPTY_MAX_RATIO * base else 'NOT met'}")
    row("empty scenario, no kernel events", quiet, "ms", None, ("the floor", base))
    row("two forks and exits (supervisor, scenario), no netns", median_ms(two_processes, args.repeat), "ms", None,
        ("the floor", base), "the design's own minimum")
    seed = median_ms(lambda: socklab.run(scenarios.close_then_send), args.repeat)
    bare = median_ms(scenarios.bare_close_then_send, args.repeat * 10)
    row("seed scenario observed", seed, "ms", None, ("the empty run", empty))
    row("seed scenario bare (no observation)", bare, "ms")
    row("seed scenario, no kernel events", median_ms(
        lambda: socklab.run(scenarios.close_then_send, kernel_events=False), args.repeat), "ms")
    row("seed scenario on two hosts, no delay", median_ms(
        lambda: socklab.run(scenarios.close_then_send_two_hosts, wire=socklab.Wire(delay=0)), args.repeat), "ms",
        None, ("one namespace", seed))
    if args.gallery:
        n = len(list((ROOT / "examples").glob("*/*.py")))
        row(f"whole gallery ({n} examples, in process)", median_ms(gallery, max(3, args.repeat // 10)) / 1000, "s")
    del ballast


def sphinx(site: Path, out: Path, *extra: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(site / "docs"), str(out), *extra], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"sphinx-build failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def site_figures(args) -> None:
    import socklab_weight

    work = Path(tempfile.mkdtemp(prefix="socklab-bench-"))
    try:
        for part in ("docs", "examples"):
            shutil.copytree(ROOT / part, work / part,
                            ignore=shutil.ignore_patterns("_build", "auto_examples", "_generated", "gen_modules"))
        pages = len(list((ROOT / "examples").glob("*/*.py")))
        print(f"\n{'site (' + str(pages) + ' example pages, load ' + format(os.getloadavg()[0], '.1f') + ')':46} "
              f"{'now':>14} {'issue 16':>12} {'ratio':>24}")
        out = work / "html"
        clean = sphinx(work, out)
        row("clean sphinx-build, examples on every core", clean, "s", TODAY["clean_s"],
            ("issue 16's 12 pages", TODAY["clean_s"]),
            f"target <= {CLEAN_MAX_RATIO:g}x: {'met' if clean <= CLEAN_MAX_RATIO * TODAY['clean_s'] else 'NOT met'}")
        nothing = sphinx(work, out)
        row("rebuild, nothing changed", nothing, "s", TODAY["nothing_s"], ("the clean build", clean))
        page = work / "docs" / "tutorial.md"
        page.write_text(page.read_text() + "\nOne more sentence of prose.\n")
        prose = sphinx(work, out)
        row("rebuild after a prose edit (tutorial.md)", prose, "s", None, ("the clean build", clean))
        weights = socklab_weight.weigh(out)
        heaviest = weights[0]
        index = next(w for w, name, _ in weights if name == "auto_examples/index.html")
        row(f"heaviest page ({heaviest[1]})", heaviest[0] / 1000, "kB", None, ("the limit", PAGE_MAX_KB),
            f"target <= {PAGE_MAX_KB} kB: {'met' if heaviest[0] <= PAGE_MAX_KB * 1000 else 'NOT met'}")
        row("gallery index with its thumbnails", index / 1000, "kB", TODAY["index_kb"],
            ("issue 16's", TODAY["index_kb"]))
        total = sum(w for w, _, _ in weights) / 1000
        row(f"all {len(weights)} pages with their images", total, "kB", TODAY["all_pages_kb"],
            ("issue 16's", TODAY["all_pages_kb"]))
        if args.serial:
            shutil.rmtree(work / "docs" / "auto_examples")
            serial = sphinx(work, work / "serial", "-D", "socklab_jobs=1")
            row("clean sphinx-build, examples one by one", serial, "s", None, ("the parallel build", clean))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--parent-mib", type=int, default=200,
                        help="grow this process by this much first, as large as a docs build (0: as it is)")
    parser.add_argument("--site", action="store_true", help="also build the site and weigh its pages")
    parser.add_argument("--serial", action="store_true", help="with --site: also a clean build, examples one by one")
    parser.add_argument("--gallery", action="store_true", help="also run every example in this process")
    args = parser.parse_args()
    run_figures(args)
    if args.site:
        site_figures(args)


if __name__ == "__main__":
    main()
