"""Command line: ``python -m socklab check | list | run NAME``."""

from __future__ import annotations

import argparse
import os
import platform
import runpy
import sys
from pathlib import Path

from . import _netns, _states


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
    ok = diag.mode != "none" and diag.capture
    print("\n".join(lines))
    print("\nall good: scenarios run isolated and captured" if ok
          else "\nscenarios will still run, but their output will say what is missing")
    return 0 if ok else 1


def scenarios(root: Path) -> dict[str, Path]:
    """Example scripts under `root`, by name (file stem without its number prefix)."""
    found = {}
    for path in sorted(root.glob("*/*.py")):
        found[path.stem.split("_", 1)[-1] if path.stem[:2].isdigit() else path.stem] = path
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m socklab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="what this machine allows: namespaces, capture, kernel")
    for name, text in (("list", "list the scenario scripts"), ("run", "run one scenario script by name")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--examples", type=Path, default=Path("examples"), help="folder of scenario scripts")
        if name == "run":
            p.add_argument("name", help="scenario name, e.g. close_then_send")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check()
    if not args.examples.is_dir():
        print(f"error: no examples folder at {args.examples}; run from the socklab checkout or pass --examples",
              file=sys.stderr)
        return 2
    known = scenarios(args.examples)
    if args.command == "list":
        for name, path in known.items():
            print(f"{name:32} {path}")
        return 0
    if args.name not in known:
        print(f"error: unknown scenario {args.name!r}. Known scenarios: {', '.join(known) or 'none'}",
              file=sys.stderr)
        return 2
    runpy.run_path(str(known[args.name]), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
