"""Every example runs as a plain script, as root and as an unprivileged user."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*/*.py"))
IDS = [f"{p.parent.name}/{p.name}" for p in EXAMPLES]


def check_output(result: subprocess.CompletedProcess, path: Path) -> None:
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    out = result.stdout
    assert "Linux " in out, "the run's provenance line is missing"
    assert "NOT isolated" not in out
    assert "calls" in out or "packets" in out or "before" in out, "no table or trace printed"


def test_there_are_examples():
    assert len(EXAMPLES) >= 1


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_runs_as_a_script(path, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SOCKLAB_OUTPUT"}
    env["MPLBACKEND"] = "Agg"
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    check_output(result, path)


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_runs_as_an_unprivileged_user(path, unprivileged):
    script = unprivileged.home / path.name
    script.write_text(path.read_text())
    script.chmod(0o644)
    result = unprivileged.run([str(script)])
    check_output(result, path)
    assert "unprivileged" in result.stdout
