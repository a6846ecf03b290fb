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
