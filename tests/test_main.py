import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import socklab
import socklab.__main__
from socklab import _netns
from socklab.__main__ import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_check_reports_namespaces_capture_and_kernel(capsys):
    code = main(["check"])
    out = capsys.readouterr().out
    assert "kernel: Linux" in out and "namespaces:" in out and "capture:" in out
    assert code == (0 if _netns.probe().private and _netns.probe().capture else 1)


def test_check_on_a_refusing_kernel_says_what_to_do(capsys, monkeypatch):
    def refuse(flags):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_netns, "unshare", refuse)
    monkeypatch.setattr(_netns, "_probe_cache", None)
    try:
        assert main(["check"]) == 1
    finally:
        _netns._probe_cache = None
    out = capsys.readouterr().out
    assert "namespaces: REFUSED" in out and "apparmor_restrict_unprivileged_userns=0" in out
    assert "two hosts: REFUSED: they need network namespaces" in out
    assert "kernel events: not recorded (no namespace)" in out


def test_check_says_whether_kernel_events_and_two_hosts_work(capsys):
    main(["check"])
    out = capsys.readouterr().out
    if os.geteuid() == 0:
        assert "kernel events: OK (BPF on the TCP tracepoints)" in out
    else:
        assert "kernel events: not recorded (not root)" in out
    assert "two hosts: OK" in out


def test_list_names_the_scenarios(capsys):
    assert main(["list", "--examples", str(EXAMPLES)]) == 0
    assert "close_then_send" in capsys.readouterr().out


def test_unknown_scenario_is_an_error_listing_the_known_ones(capsys):
    assert main(["run", "no_such_thing", "--examples", str(EXAMPLES)]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'no_such_thing'" in err and "close_then_send" in err


def test_missing_examples_folder_is_explained(capsys, tmp_path):
    assert main(["list", "--examples", str(tmp_path / "nowhere")]) == 2
    assert "no examples folder" in capsys.readouterr().err


def test_run_by_name_prints_the_tables(capsys, monkeypatch):
    monkeypatch.delenv("SOCKLAB_OUTPUT", raising=False)
    assert main(["run", "close_then_send", "--examples", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "FIN-WAIT-2" in out and "EPIPE" in out and "Flags [R]" in out


def test_command_is_required_and_its_absence_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: socklab" in capsys.readouterr().err


def test_help_is_named_socklab_and_plain_text(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: socklab ") and "``" not in out and "socklab run close_then_send" in out


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"socklab {socklab.__version__}"


def test_list_without_a_folder_finds_the_scenarios_shipped_with_socklab(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing called examples here
    assert main(["list"]) == 0
    assert "close_then_send" in capsys.readouterr().out


def test_examples_are_found_in_the_package_before_the_checkout(monkeypatch, tmp_path):
    package = tmp_path / "site-packages" / "socklab"
    (package / "examples" / "02_close").mkdir(parents=True)
    monkeypatch.setattr(socklab.__main__, "__file__", str(package / "__main__.py"))
    assert socklab.__main__.default_examples() == package / "examples"


def test_a_failing_scenario_exits_1_with_the_reason_on_stderr(capsys, tmp_path):
    (tmp_path / "01_x").mkdir()
    (tmp_path / "01_x" / "01_broken.py").write_text(
        "import socklab\n"
        "def broken(lab):\n"
        "    raise ValueError('boom')\n"
        "socklab.run(broken)\n")
    assert main(["run", "broken", "--examples", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "scenario broken failed" in captured.err and "ValueError: boom" in captured.err
    assert captured.out == ""


# -- check gives the right advice in each environment (issue 10, item 5) ----------

ENVIRONMENTS = Path(__file__).resolve().parent / "environments.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def need(condition: bool, what: str) -> None:
    """Skip, saying what is missing; in CI (CI=true) a missing tool is a failure."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is required in CI")
        pytest.skip(f"{what} is missing")


def need_root() -> None:
    need(os.geteuid() == 0, "root (to make the environment)")


def check_output(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert "kernel: Linux" in result.stdout, result.stderr
    return result.stdout


def own_check() -> list[str]:
    """This test environment's Python running the check, with socklab from the checkout."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(SRC)!r}); "
                                  "from socklab.__main__ import main; sys.exit(main(['check']))"]


SRC = Path(__file__).resolve().parent.parent / "src"


def test_check_without_cap_net_raw_finds_capture_in_a_user_namespace():
    need_root()
    need(shutil.which("capsh") is not None, "capsh (apt-get install libcap2-bin)")
    out = check_output(["capsh", "--drop=cap_net_raw", "--", "-c", shlex.join(own_check())])
    assert "capture: OK" in out and "namespaces: OK (userns+netns)" in out, out
    assert "allow user namespaces" not in out


def test_check_with_proc_sys_read_only_reports_namespaces_that_work():
    need_root()
    need(shutil.which("unshare") is not None and shutil.which("mount") is not None, "unshare and mount (util-linux)")
    script = f"mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && {shlex.join(own_check())}"
    out = check_output(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    assert "namespaces: OK" in out and "capture: OK" in out, out


def unprivileged_env(unprivileged) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(unprivileged.home),
            "PYTHONPATH": f"{unprivileged.home / 'src'}:{unprivileged.home / 'site'}"}


def test_check_with_user_namespaces_limited_to_none_names_the_setting(unprivileged):
    env = unprivileged_env(unprivileged)
    out = check_output([SYSTEM_PYTHON, str(ENVIRONMENTS), "no-user-namespaces", "/usr/bin/env", *(
        f"{k}={v}" for k, v in env.items()), SYSTEM_PYTHON, "-m", "socklab", "check"])
    assert "user: uid 65534" in out and "namespaces: REFUSED" in out, out
    assert "user.max_user_namespaces" in out and "ENOSPC" in out


def seccomp_available() -> bool:
    return subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, check=False).returncode == 0


def test_check_as_root_with_unshare_refused_by_seccomp_does_not_say_run_as_root(unprivileged):
    need(seccomp_available(), f"the seccomp module for {SYSTEM_PYTHON} (apt-get install python3-seccomp)")
    env = unprivileged_env(unprivileged)
    out = check_output([SYSTEM_PYTHON, str(ENVIRONMENTS), "refuse-unshare", SYSTEM_PYTHON, "-m", "socklab", "check"],
                       env=env)
    assert "user: uid 0" in out and "namespaces: REFUSED" in out, out
    assert "seccomp" in out and "run as root" not in out
    assert "capture: OK" in out  # root captures on the host's lo, filtered to the run's ports
