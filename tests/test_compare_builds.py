"""The check that a parallel build shows what a serial one does, apart from times."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_tools"))
import compare_builds  # noqa: E402

PAGE = """<html><body><article>
<h1>close then send</h1>
<pre>{t} IP 127.0.0.1.50000 > 127.0.0.1.4321: Flags [R], seq 2, win 0, length 0</pre>
<table><tr><td>client</td><td>{state}</td></tr><tr><td>fileno()</td></tr><tr><td>{fd}</td></tr></table>
<p>send #2: EPIPE, after {ms} ms (0 minutes {s} seconds); unix {inode}</p>
<img alt="Ladder diagram: client sends RST">
</article></body></html>"""


def write(root: Path, **values) -> Path:
    page = root / "auto_examples" / "02_close" / "01_close_then_send.html"
    page.parent.mkdir(parents=True)
    page.write_text(PAGE.format(**{"t": "0.000021", "state": "TIME-WAIT", "fd": 24, "ms": "+3.549", "s": "0.663",
                                   "inode": 105285004, **values}))
    return root


def test_builds_that_differ_only_in_times_and_kernel_numbers_are_the_same(tmp_path):
    a = write(tmp_path / "a")
    b = write(tmp_path / "b", t="0.000035", fd=31, ms="-5.183", s="0.887", inode=105327397)
    assert compare_builds.compare(a, b) == []


def test_a_different_state_is_reported_with_its_page(tmp_path):
    a = write(tmp_path / "a")
    b = write(tmp_path / "b", state="FIN-WAIT-2")
    problems = compare_builds.compare(a, b)
    assert len(problems) == 1 and problems[0].startswith("auto_examples/02_close/01_close_then_send.html")
    assert "-TIME-WAIT" in problems[0] and "+FIN-WAIT-2" in problems[0]
    assert compare_builds.main([str(a), str(b)]) == 1


def test_a_page_missing_from_one_build_is_a_difference(tmp_path):
    a = write(tmp_path / "a")
    (tmp_path / "b").mkdir()
    assert compare_builds.compare(a, tmp_path / "b") == [f"auto_examples/02_close/01_close_then_send.html: only "
                                                         f"in {a}"]


def test_descriptors_compare_by_their_order_within_one_run():
    serial = "a: fileno() = 24; b: fileno() = 25\n\n\n\n\n\n\nc: fileno() = 24; d: fileno() = 28"
    same_order = "a: fileno() = 31; b: fileno() = 32\n\n\n\n\n\n\nc: fileno() = 33; d: fileno() = 35"
    other_order = "a: fileno() = 31; b: fileno() = 32\n\n\n\n\n\n\nc: fileno() = 35; d: fileno() = 33"
    assert compare_builds.rank_descriptors(serial) == compare_builds.rank_descriptors(same_order)
    assert compare_builds.rank_descriptors(serial) != compare_builds.rank_descriptors(other_order)
