"""The docs build runs every example again when what it ran on changed, and only then."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
import socklab_freshness  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def built(tmp_path, *names, runs=True):
    """A gallery as a previous build left it: each example's copy, md5 and runs."""
    gallery, examples = tmp_path / "auto_examples", tmp_path / "examples"
    for name in names:
        for where in (gallery / "02_close", examples / "02_close"):
            where.mkdir(parents=True, exist_ok=True)
            (where / f"{name}.py").write_text("")
        (gallery / "02_close" / f"{name}.py.md5").write_text("d41d8cd98f00b204e9800998ecf8427e")
        (gallery / "02_close" / f"{name}.rst").write_text("")
        if runs:
            (gallery / "02_close" / f"{name}.runs.pickle").write_bytes(b"")
    return gallery, examples


def md5s(gallery):
    return sorted(p.name for p in gallery.glob("*/*.md5"))


def test_a_new_stamp_makes_every_example_run_again_and_the_same_stamp_none(tmp_path):
    gallery, examples = built(tmp_path, "01_a", "02_b")
    plots = tmp_path / "plot_directive"
    plots.mkdir()
    socklab_freshness.invalidate(gallery, examples, "stamp-1", plots)
    assert md5s(gallery) == [] and not plots.exists()
    gallery, examples = built(tmp_path, "01_a", "02_b")
    assert socklab_freshness.invalidate(gallery, examples, "stamp-1") == []
    assert md5s(gallery) == ["01_a.py.md5", "02_b.py.md5"]


def test_the_stamp_changes_with_socklab_s_code(tmp_path, monkeypatch):
    package = tmp_path / "socklab"
    package.mkdir()
    (package / "__init__.py").write_text("x = 1\n")
    before = socklab_freshness.stamp(DOCS)
    monkeypatch.setattr(socklab_freshness.socklab, "__file__", str(package / "__init__.py"))
    moved = socklab_freshness.stamp(DOCS)
    (package / "__init__.py").write_text("x = 2\n")
    assert len({before, moved, socklab_freshness.stamp(DOCS)}) == 3
    assert socklab_freshness.stamp(DOCS) == socklab_freshness.stamp(DOCS)


def test_an_example_whose_runs_are_missing_runs_again(tmp_path):
    gallery, examples = built(tmp_path, "01_a", runs=False)
    (gallery / socklab_freshness.STAMP).write_text("same\n")
    assert socklab_freshness.invalidate(gallery, examples, "same") == ["02_close/01_a.py runs again: its runs are "
                                                                      "not on disk"]
    assert md5s(gallery) == []


def test_the_page_of_a_deleted_example_is_removed(tmp_path):
    gallery, examples = built(tmp_path, "01_a", "02_b")
    (examples / "02_close" / "02_b.py").unlink()
    socklab_freshness.invalidate(gallery, examples, "s")
    assert sorted(p.name for p in (gallery / "02_close").iterdir()) == ["01_a.py", "01_a.rst", "01_a.runs.pickle"]
