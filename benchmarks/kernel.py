"""What recording the kernel's events costs: attaching once, and each run's watch/stop/read (medians).

Rows:
- attach: recorder() in a fresh process (BTF read, tracefs formats, 5 programs loaded and attached);
- detach: Recorder.close() (why the recorder stays attached for the process's life);
- watch(), stop() (drain to the end marker, decode): per run, median of --repeat;
- a whole run (fork, namespace, scenario, end marker) with and without recording: the difference is what
  recording adds to a run.

Usage (root): python benchmarks/kernel.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

import nschild  # noqa: E402
import test_kernel  # noqa: E402
from socklab import _kernel  # noqa: E402

COLD = """
import sys, time
sys.path.insert(0, {src!r})
t0 = time.perf_counter()
from socklab import _bpf, _kernel
t1 = time.perf_counter()
_bpf.BTF.load()
t2 = time.perf_counter()
r = _kernel.recorder()
t3 = time.perf_counter()
assert isinstance(r, _kernel.Recorder), r
r.close()
t4 = time.perf_counter()
print((t2 - t1) * 1000, (t3 - t2) * 1000, (t4 - t3) * 1000)
"""


def median(values: list[float]) -> str:
    return f"{statistics.median(values):8.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    rec = _kernel.recorder()
    if isinstance(rec, _kernel.Unavailable):
        sys.exit(rec.describe())

    btf, attach, detach = [], [], []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", COLD.format(src=str(ROOT / "src"))], capture_output=True,
                             text=True, check=True).stdout.split()
        btf.append(float(out[0]))
        attach.append(float(out[1]))
        detach.append(float(out[2]))

    watch, stop, events = [], [], 0

    class Timed:
        def watch(self, inode):
            t = time.perf_counter()
            rec.watch(inode)
            watch.append((time.perf_counter() - t) * 1000)

        def stop(self):
            t = time.perf_counter()
            got = rec.stop()
            stop.append((time.perf_counter() - t) * 1000)
            nonlocal events
            events = len(got)
            return got

        def cancel(self):
            rec.cancel()

    scenario = test_kernel.the_reference_scenario
    with_rec, without = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        nschild.run(scenario, marker=False)
        without.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        nschild.run(scenario, Timed())  # type: ignore[arg-type]
        with_rec.append((time.perf_counter() - t) * 1000)

    print(f"kernel events, Linux {Path('/proc/sys/kernel/osrelease').read_text().strip()}, "
          f"median of 5 cold processes / {args.repeat} runs")
    print(f"  read BTF (/sys/kernel/btf/vmlinux)      {median(btf)}   once per process")
    print(f"  recorder(): BTF + tracefs + attach 5    {median(attach)}   once per process")
    print(f"  Recorder.close() (detach)               {median(detach)}   never in normal use")
    print(f"  watch()                                 {median(watch)}   per run")
    print(f"  stop(): drain to the marker, decode     {median(stop)}   per run ({events} events)")
    print(f"  whole run without recording             {median(without)}")
    print(f"  whole run with recording                {median(with_rec)}")
    paired = [w - o for w, o in zip(with_rec, without, strict=True)]
    print(f"  recording adds (median of paired diff.) {median(paired)}")


if __name__ == "__main__":
    main()
