"""Shared fixtures: a Python an unprivileged user can run socklab with; tools a test needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
#: In CI (``CI=true``, as ``.ci/run`` is run) a missing tool fails its tests instead of skipping them.
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, install: str) -> str:
    """The path of command `name`; skip the test where it is absent (fail in CI, which installs it)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed: {install} (.ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def _as_nobody(args: list[str], env: dict[str, str], cwd: Path | str = "/",
               timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, user=NOBODY, group=NOBODY, extra_groups=[],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _python_for_nobody(home: Path) -> tuple[str, dict[str, str]]:
    """This test run's own interpreter where uid 65534 can run it, and the environment it needs.

    The interpreter must be the one the tests run on (the copied site-packages hold compiled
    extensions for exactly this version). Where it lives somewhere uid 65534 cannot read
    (pyenv's under root's 0700 home), its binary, shared library and standard library are
    copied into `home`; the interpreter finds its prefix from where its binary is.
    """
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    env = {"PATH": "/usr/bin:/bin"}
    try:
        if _as_nobody([str(base), "-c", "import encodings"], env).returncode == 0:
            return str(base), {}
    except PermissionError:  # exec refused: a directory on its path is closed to uid 65534
        pass
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(sys.base_prefix)
    dest = home / "python"
    (dest / "bin").mkdir(parents=True)
    (dest / "lib").mkdir()
    shutil.copy2(base, dest / "bin" / version)
    for library in (prefix / "lib").glob("libpython*.so*"):
        shutil.copy2(library, dest / "lib" / library.name)
    shutil.copytree(prefix / "lib" / version, dest / "lib" / version, symlinks=True,
                    ignore=shutil.ignore_patterns("test", "tests", "site-packages", "__pycache__", "idlelib",
                                                  "tkinter", "turtledemo", "ensurepip", "config-*"))
    (dest / "lib" / version / "site-packages").mkdir()
    return str(dest / "bin" / version), {"LD_LIBRARY_PATH": str(dest / "lib")}


class Unprivileged:
    """Runs Python code or scripts as uid/gid 65534 with socklab and its dependencies importable."""

    def __init__(self, home: Path, python: str, env: dict[str, str]) -> None:
        self.home, self.python, self.env = home, python, env

    def run(self, args: list[str], timeout: float = 60, interpreter: str | None = None) -> subprocess.CompletedProcess:
        """Run `args` with this run's Python (or `interpreter`, such as Debian's /usr/bin/python3)."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "MPLCONFIGDIR": str(self.home / "mpl"),
            "PYTHONPATH": f"{self.home / 'src'}:{self.home / 'site'}",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.env,
        }
        return _as_nobody([interpreter or self.python, *args], env, cwd=self.home, timeout=timeout)


@pytest.fixture(scope="session")
def unprivileged() -> Unprivileged:
    """Give uid 65534 this run's Python and a copy of our code and site-packages."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root; run the tests as root to cover the unprivileged path")
    home = Path(tempfile.mkdtemp(prefix="socklab-nobody-"))
    try:
        home.chmod(0o755)
        python, env = _python_for_nobody(home)
        shutil.copytree(ROOT / "src", home / "src", ignore=shutil.ignore_patterns("__pycache__"))
        # the checkout may sit where uid 65534 cannot read (under root's home): its tests' helpers too
        shutil.copytree(ROOT / "tests", home / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(sysconfig.get_paths()["purelib"], home / "site", symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "pip", "_pytest", "pytest*", "*.pth"))
        (home / "mpl").mkdir()
        os.chown(home / "mpl", NOBODY, NOBODY)
        subprocess.run(["chmod", "-R", "a+rX", str(home)], check=True)
        yield Unprivileged(home, python, env)
    finally:
        shutil.rmtree(home)
