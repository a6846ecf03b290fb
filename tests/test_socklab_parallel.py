"""The docs build hands the examples sphinx-gallery would run to worker processes."""

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
import socklab_parallel  # noqa: E402


def get_md5sum(path: Path, mode: str = "t") -> str:  # sphinx-gallery's, for a file with \n line ends
    return hashlib.md5(path.read_bytes()).hexdigest()


def gallery(tmp_path):
    examples = tmp_path / "examples" / "02_close"
    target = tmp_path / "docs" / "auto_examples" / "02_close"
    examples.mkdir(parents=True)
    target.mkdir(parents=True)
    for name in ("01_current.py", "02_changed.py", "03_new.py", "__init__.py"):
        (examples / name).write_text(f"# {name}\n")
    (target / "01_current.py.md5").write_text(get_md5sum(examples / "01_current.py", mode="t"))
    (target / "02_changed.py.md5").write_text("0" * 32)
    conf = {"examples_dirs": "../examples", "gallery_dirs": "auto_examples", "src_dir": str(tmp_path / "docs"),
            "ignore_pattern": r"__init__\.py", "filename_pattern": r".*\.py$"}
    return conf, examples, target


def test_only_the_examples_sphinx_gallery_would_run_go_to_the_workers(tmp_path):
    conf, examples, target = gallery(tmp_path)
    todo = socklab_parallel.examples_to_run(conf, md5=get_md5sum)
    assert todo == [("02_changed.py", target, examples), ("03_new.py", target, examples)]


def test_the_longest_example_last_time_starts_first_and_a_new_one_before_it(tmp_path):
    conf, examples, target = gallery(tmp_path)
    (target / "02_changed.cost.json").write_text(json.dumps({"time": 3.0, "memory": 0}))
    assert socklab_parallel._last_cost(target, "02_changed.py") == 3.0
    assert socklab_parallel._last_cost(target, "03_new.py") == float("inf")
