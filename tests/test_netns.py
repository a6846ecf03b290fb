import os

from socklab import _netns


def test_probe_finds_isolation_on_this_machine():
    iso = _netns.probe(refresh=True)
    assert iso.mode == ("netns" if os.geteuid() == 0 else "userns+netns")
    assert iso.capture and iso.reason == ""


def test_refused_namespaces_fall_back_to_the_host_with_a_fix(monkeypatch):
    def refuse(flags):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_netns, "unshare", refuse)
    iso = _netns.probe(refresh=True)
    _netns._probe_cache = None
    assert iso.mode == "none" and not iso.private
    assert "EPERM" in iso.reason and "sysctl" in iso.fix
    assert "NOT isolated" in iso.describe()


def test_isolation_description_says_what_ran_where():
    assert _netns.Isolation("userns+netns", True).describe() == (
        "ran in a private user and network namespace (unprivileged); packet capture on")
