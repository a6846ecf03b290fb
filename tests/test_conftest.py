"""The test helpers themselves: a missing tool skips, except in CI."""

import pytest

import conftest


def test_a_missing_tool_skips_with_what_to_install(monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", False)
    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="tcpdump is not installed: apt-get install tcpdump"):
        conftest.require_tool("tcpdump", "apt-get install tcpdump")


def test_a_missing_tool_fails_in_ci(monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", True)
    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="tshark is not installed"):
        conftest.require_tool("tshark", "apt-get install tshark")


def test_a_present_tool_is_returned_by_path(monkeypatch):
    monkeypatch.setattr(conftest.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert conftest.require_tool("tcpdump", "apt-get install tcpdump") == "/usr/bin/tcpdump"
