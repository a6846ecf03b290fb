"""The build fails when a page with its images weighs more than the limit."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "_ext"))
import socklab_weight  # noqa: E402


def site(tmp_path, image_kb: int) -> Path:
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "ladder.svg").write_bytes(b"x" * image_kb * 1000)
    (tmp_path / "_images" / "thumb.png").write_bytes(b"x" * 1000)
    page = tmp_path / "auto_examples" / "close.html"
    page.parent.mkdir()
    page.write_text('<img src="../_images/ladder.svg"><img src="../_images/ladder.svg"> <img src="../_images/'
                    'thumb.png"><img src="https://example.org/x.png"><img src="data:image/png;base64,AA==">')
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "big.html").write_text("x" * 400_000)  # not a page
    return page


def test_a_page_weighs_its_html_and_each_of_its_images_once(tmp_path):
    page = site(tmp_path, 100)
    weight, images = socklab_weight.page_weight(page, tmp_path)
    assert weight == page.stat().st_size + 100_000 + 1000
    assert images == [(100_000, "_images/ladder.svg"), (1000, "_images/thumb.png")]
    assert [name for _, name, _ in socklab_weight.weigh(tmp_path)] == ["auto_examples/close.html"]


def test_a_page_over_the_limit_fails_the_build_naming_it_and_its_heaviest_image(tmp_path):
    site(tmp_path, 300)
    app = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=str(tmp_path),
                          config=SimpleNamespace(socklab_max_page_kb=300))
    with pytest.raises(RuntimeError, match=r"auto_examples/close.html: 301 kB \(images: _images/ladder.svg 300 kB"):
        socklab_weight.check_weights(app, None)
    app.config.socklab_max_page_kb = 302
    socklab_weight.check_weights(app, None)
