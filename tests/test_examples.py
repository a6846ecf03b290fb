"""Every example runs as a plain script, as root and as an unprivileged user."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*/*.py"))
IDS = [f"{p.parent.name}/{p.name}" for p in EXAMPLES]


def check_output(result: subprocess.CompletedProcess, path: Path) -> bool:
    """The example ran to its end and printed its run; False when it said it could not run here."""
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    out = result.stdout
    if "UNCHECKED: missing" in result.stderr:  # a page that needs a tool this machine lacks (the seed's C program)
        assert out.startswith("WARNING: this machine lacks"), out[:500]
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path.name} could not run in CI: {result.stderr.strip()}")
        return False
    assert "Linux " in out, "the run's provenance line is missing"
    assert "NOT isolated" not in out
    assert "calls" in out or "packets" in out or "before" in out, "no table or trace printed"
    return True


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
    if check_output(result, path):
        assert "unprivileged" in result.stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_observes_what_it_can_as_an_unprivileged_user_with_unshare_refused(path, unprivileged):
    """As Docker's default seccomp profile does: no namespace, no capture. The example runs
    to its end, saying what is missing; claims about packets are reported as unchecked,
    loudly, never as broken and never as passed."""
    if subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True).returncode:
        if os.environ.get("CI") == "true":
            pytest.fail("the seccomp module for /usr/bin/python3 is required in CI (apt-get install python3-seccomp)")
        pytest.skip("the seccomp module for /usr/bin/python3 is missing (apt-get install python3-seccomp)")
    script = unprivileged.home / path.name
    script.write_text(path.read_text())
    script.chmod(0o644)
    environments = Path(__file__).resolve().parent / "environments.py"
    result = unprivileged.run([str(environments), "refuse-unshare", unprivileged.python, str(script)],
                              interpreter="/usr/bin/python3")  # Debian's, which has python3-seccomp
    if needs_two_hosts(path):  # two hosts cannot be faked on one: the page stops at once, saying why and what to do
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and last.startswith("socklab.WireUnavailable: "), result.stderr[-3000:]
        assert "needs two hosts joined by a link" in last and "Fix: " in last, last
        assert result.stdout == "", "a page that cannot have its two hosts must not show anything as observed"
        return
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NOT isolated" in result.stdout and "Fix:" in result.stdout
    if "flow=" in path.read_text() or "packets=" in path.read_text():
        assert "UNCHECKED" in result.stderr and "no packet capture" in result.stderr


def needs_two_hosts(path: Path) -> bool:
    """A page whose runs need two hosts joined by a link (``run(..., wire=socklab.Wire(...))``)."""
    return "wire=socklab.Wire(" in path.read_text()


def scenario_functions(path: Path) -> dict:
    """The functions and constants an example defines, without running its runs."""
    import ast

    tree = ast.parse(path.read_text())
    tree.body = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef)
                 or (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant))]
    namespace: dict = {}
    exec(compile(tree, str(path), "exec"), namespace)
    return namespace


def test_shutdown_before_close_waits_for_the_clients_kernel_not_just_the_packet(monkeypatch):
    """``wait_packet`` returns when a packet leaves; its receiver may take it in later (under
    load, much later). A page that sends next must wait for the state the packet causes, or
    its byte can reach the client before the ACK does (a second client [R] in 1 of 30 loaded
    runs). Here wait_packet returns at once, the limit of that delay: a page that relied on it
    sends its byte before the ACK (the trace loses the server's [.]); one that waits for the
    client's FIN_WAIT2 shows the same trace as ever."""
    import socklab

    page = scenario_functions(next(p for p in EXAMPLES if p.name == "01_shutdown_before_close.py"))
    monkeypatch.setattr(socklab.Lab, "wait_packet", lambda self, *args, **kwargs: None)
    flow = ["client [S]", "server [S.]", "client [.]", "client [F.]", "server [.]", "server [P.]", "client [R]"]
    for name in ("plain_close", "shutdown_without_close"):
        run = socklab.run(page[name])
        assert run.flow() == flow, name
        assert [c.outcome for c in run.calls][1:3] == ["1", "EPIPE"], name


def test_the_tutorials_one_line_change_stops_with_the_message_the_tutorial_quotes(tmp_path):
    """docs/tutorial.md section 6 quotes what the central page prints when its close() is
    replaced by the half-close the tutorial gives: that quote must be what a real run prints."""
    import re

    tutorial = (Path(__file__).resolve().parent.parent / "docs" / "tutorial.md").read_text()
    section = tutorial.split("## 6.")[1]
    line = re.search(r"`(lab\.call\(client\.shutdown[^`]*)`", section).group(1)
    quoted = " ".join(re.search(r"```text\n(.*?)```", section, re.S).group(1).split())
    page = next(p for p in EXAMPLES if p.name == "01_close_then_send.py")
    changed = page.read_text().replace('lab.call(client.close, label="close()")', line)
    assert changed != page.read_text()
    script = tmp_path / page.name
    script.write_text(changed)
    env = {k: v for k, v in os.environ.items() if k != "SOCKLAB_OUTPUT"} | {"MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0
    if "no capture" in result.stderr:
        pytest.skip("this machine cannot capture packets, so the run stops with another message")
    assert quoted in " ".join(result.stderr.split()), result.stderr[-2000:]
