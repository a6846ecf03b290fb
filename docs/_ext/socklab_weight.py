"""No page heavier than ``socklab_max_page_kb`` over the wire: its HTML plus its images.

At ``build-finished`` every HTML page of the output is weighed: the page's own
bytes plus the bytes of every local image it shows (``<img src>``, each file
once per page), as a browser with an empty cache fetches them, uncompressed
(servers may compress HTML and SVG, so this is the most a reader downloads).
Style sheets, scripts and fonts are left out: every page shares them, and a
browser fetches them once. A page over the limit fails the build, naming it
and its heaviest images. ``python docs/_ext/socklab_weight.py HTML_DIR`` prints
every page's weight, heaviest first (the bench uses ``weigh``).
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEFAULT_MAX_KB = 300
#: An <img> element's src, as Sphinx and furo write it (a regular expression: an HTML parser
#: took 1.9 s for the site's 55 pages, this a few ms).
IMG_SRC = re.compile(r"""<img\b[^>]*?\bsrc=(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)


def page_weight(page: Path, root: Path) -> tuple[int, list[tuple[int, str]]]:
    """(bytes of the page and its images, [(bytes, image path relative to root)] heaviest first)."""
    images = {}
    for match in IMG_SRC.finditer(page.read_text(encoding="utf-8")):
        src = html.unescape(match.group(1) or match.group(2) or "")
        parts = urlsplit(src)
        if parts.scheme or parts.netloc or parts.path.startswith("data:"):
            continue  # not a file of the site (an inline image is in the page's bytes already)
        path = (page.parent / unquote(parts.path)).resolve()
        if path.is_file():
            images[path] = path.stat().st_size
    listed = sorted(((size, path.relative_to(root.resolve()).as_posix()) for path, size in images.items()),
                    reverse=True)
    return page.stat().st_size + sum(images.values()), listed


def weigh(root: Path) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """(weight, page, its images) for every HTML page under root, heaviest first."""
    found = []
    for page in root.rglob("*.html"):
        if page.relative_to(root).parts[0].startswith(("_", ".")):
            continue
        weight, images = page_weight(page, root)
        found.append((weight, page.relative_to(root).as_posix(), images))
    return sorted(found, reverse=True)


def check_weights(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    limit = int(app.config.socklab_max_page_kb) * 1000
    heavy = [(w, page, images) for w, page, images in weigh(Path(app.outdir)) if w > limit]
    if heavy:
        lines = [f"{page}: {w / 1000:.0f} kB (images: "
                 + ", ".join(f"{name} {size / 1000:.0f} kB" for size, name in images[:3]) + ")"
                 for w, page, images in heavy]
        raise RuntimeError(f"socklab: {len(heavy)} page(s) weigh more than {limit // 1000} kB with their images; "
                           "make their pictures lighter (SVG, fewer thumbnails):\n" + "\n".join(lines))


def setup(app):
    app.add_config_value("socklab_max_page_kb", DEFAULT_MAX_KB, "")
    app.connect("build-finished", check_weights)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    pages = weigh(Path(sys.argv[1]))
    for weight, page, images in pages:
        print(f"{weight / 1000:8.1f} kB  {page}  ({len(images)} images)")
    print(f"{len(pages)} pages, {sum(w for w, _, _ in pages) / 1000:.0f} kB in all, heaviest "
          f"{pages[0][0] / 1000:.0f} kB" if pages else "no pages")
