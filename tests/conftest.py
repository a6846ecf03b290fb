"""Shared fixtures: a Python an unprivileged user can run socklab with."""

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


class Unprivileged:
    """Runs Python code or scripts as uid/gid 65534 with socklab and its dependencies importable."""

    def __init__(self, home: Path, python: str) -> None:
        self.home, self.python = home, python

    def run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "MPLCONFIGDIR": str(self.home / "mpl"),
            "PYTHONPATH": f"{self.home / 'src'}:{self.home / 'site'}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return subprocess.run([self.python, *args], cwd=self.home, env=env, user=NOBODY, group=NOBODY,
                              extra_groups=[], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def unprivileged() -> Unprivileged:
    """Give uid 65534 a Python it can read: Debian's python3 and a copy of our site-packages."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root; run the tests as root to cover the unprivileged path")
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.fail("no /usr/bin/python3 for the unprivileged user: apt-get install python3 (.ci/run does)")
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.fail(f"{python} is Python {version}, the test environment {sys.version_info[:2]}: "
                    "their compiled packages are not interchangeable")
    home = Path(tempfile.mkdtemp(prefix="socklab-nobody-"))
    home.chmod(0o755)
    shutil.copytree(ROOT / "src", home / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(sysconfig.get_paths()["purelib"], home / "site", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "pip", "_pytest", "pytest*", "*.pth"))
    (home / "mpl").mkdir()
    os.chown(home / "mpl", NOBODY, NOBODY)
    subprocess.run(["chmod", "-R", "a+rX", str(home)], check=True)
    yield Unprivileged(home, python)
    shutil.rmtree(home)
