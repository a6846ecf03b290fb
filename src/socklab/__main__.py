"""Command line: ``socklab check | list | run NAME`` (also ``python -m socklab``).

The scenario scripts ship inside the package (``socklab/examples`` in the
wheel), so ``list`` and ``run`` work after a plain ``pip install``; in a
checkout they are the repository's ``examples/``. Exit codes follow the
convention: 0 success, 1 a failure (a scenario failed, or ``check`` found a
gap), 2 a usage error (unknown command or scenario). Errors go to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import runpy
import sys
from pathlib import Path

from . import _kernel, _netns, _states
from ._hosts import Wire, WireUnavailable
from ._runner import run
from ._version import __version__

DESCRIPTION = """\
Run TCP teardown scenarios on the real Linux kernel and show what happened:
socket states, call results and errnos, packets.

  socklab check                what this machine allows (namespaces, capture)
  socklab list                 the scenarios that ship with socklab
  socklab run close_then_send  run one and print its tables and trace
"""


def check() -> int:
    """Report what this machine allows, and what to do about each gap."""
    diag = _netns.diagnose(refresh=True)
    lines = [f"kernel: Linux {platform.release()}", f"user: uid {os.geteuid()}"]
    if diag.mode != "none":
        lines.append(f"namespaces: OK ({diag.mode}): each scenario gets its own network namespace")
    else:
        lines.append(f"namespaces: REFUSED: {diag.namespace_reason}\n  fix: {diag.namespace_fix}")
    if diag.capture:
        where = ("the scenario's lo" if diag.mode != "none"
                 else "the host's lo, filtered in the kernel to the run's ports")
        lines.append(f"capture: OK: packet socket on {where}")
    else:
        lines.append(f"capture: REFUSED: {diag.capture_reason}\n  fix: {diag.capture_fix}")
    try:
        _states.tcp_rows()
        lines.append("socket states: OK (sock_diag netlink, as ss uses)")
    except OSError as e:
        lines.append(f"socket states: netlink refused ({e}); falling back to /proc/net/tcp (no LISTEN backlog)")
    lines.append(_kernel_events_line(diag.mode, diag.namespace_fix))
    lines.append(_two_hosts_line(diag.mode, diag.namespace_fix))
    ok = diag.mode != "none" and diag.capture
    print("\n".join(lines))
    print("\nall good: scenarios run isolated and captured" if ok
          else "\nscenarios will still run, but their output will say what is missing")
    return 0 if ok else 1


def _kernel_events_line(mode: str, namespace_fix: str) -> str:
    """Whether runs here record the kernel's own events (resets' reasons, every state change)."""
    if mode != "netns":
        fix = namespace_fix if mode == "none" else _kernel.FIX_ROOT
        return (f"kernel events: not recorded ({'no namespace' if mode == 'none' else 'not root'}): "
                f"claims about reset reasons and transitions are reported unchecked\n  fix: {fix}")
    recorder = _kernel.recorder()
    if isinstance(recorder, _kernel.Unavailable):
        return f"kernel events: UNAVAILABLE: {recorder.reason}\n  fix: {recorder.fix}"
    missing = "; ".join(f"{what}: {why}" for what, why in sorted(recorder.missing.items()))
    return "kernel events: OK (BPF on the TCP tracepoints)" + (f", except {missing}" if missing else "")


def _two_hosts_line(mode: str, namespace_fix: str) -> str:
    """Whether scenarios can have two hosts joined by a link (``run(..., wire=Wire())``)."""
    if mode == "none":
        return f"two hosts: REFUSED: they need network namespaces\n  fix: {namespace_fix}"
    try:
        run(lambda lab: None, name="two hosts check", wire=Wire(delay=0), kernel_events=False)
    except WireUnavailable as e:
        return f"two hosts: REFUSED: {e}"
    return "two hosts: OK: run(..., wire=socklab.Wire(delay=...)) gives a scenario a client, a server and a link"


def default_examples() -> Path:
    """The scenario scripts: shipped in the package, else the checkout's ``examples/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "examples", here.parent.parent / "examples"):
        if candidate.is_dir():
            return candidate
    return here / "examples"


def scenarios(root: Path) -> dict[str, Path]:
    """Example scripts under `root`, by name (file stem without its number prefix)."""
    found = {}
    for path in sorted(root.glob("*/*.py")):
        found[path.stem.split("_", 1)[-1] if path.stem[:2].isdigit() else path.stem] = path
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="socklab", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"socklab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{check,list,run}")
    sub.add_parser("check", help="what this machine allows: namespaces, capture, kernel")
    for name, text in (("list", "list the scenario scripts"), ("run", "run one scenario script by name")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--examples", type=Path, default=None, metavar="DIR",
                         help="folder of scenario scripts (default: the ones shipped with socklab)")
        if name == "run":
            cmd.add_argument("name", help="scenario name, e.g. close_then_send")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "check":
        return check()
    examples = args.examples or default_examples()
    if not examples.is_dir():
        print(f"socklab: error: no examples folder at {examples}; pass --examples DIR "
              "(a folder of <section>/<scenario>.py scripts)", file=sys.stderr)
        return 2
    known = scenarios(examples)
    if args.command == "list":
        for name, path in known.items():
            print(f"{name:32} {path}")
        return 0
    if args.name not in known:
        print(f"socklab: error: unknown scenario {args.name!r}; `socklab list` shows the known ones: "
              f"{', '.join(known) or 'none'}", file=sys.stderr)
        return 2
    from ._claims import ClaimError
    from ._runner import ScenarioError

    try:
        runpy.run_path(str(known[args.name]), run_name="__main__")
    except (ScenarioError, ClaimError) as e:
        print(f"socklab: scenario {args.name} failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
