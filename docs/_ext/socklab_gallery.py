"""Sphinx glue for socklab: pcap downloads and the pages generated from all runs.

* ``pcap_scraper`` (a sphinx-gallery image scraper): after each code block, every
  ``socklab.Run`` in the example's globals not yet published gets its capture
  written next to the generated page and a ``:download:`` link. The file is the
  capture of this build's run.
* The same scraper keeps every run of the example on disk, next to its page
  (``<example>.runs.pickle``, rewritten after each block). Examples may run in
  other processes (``socklab_parallel``) or not at all in this build (their
  page is current: ``socklab_freshness``), so the pages that collect every run
  read them from there, never from this process's memory.
* When sphinx-gallery has executed all examples (``builder-inited``, after
  sphinx-gallery's own handler), ``write_tables`` writes the "what happens
  when" matrix and the errno table into ``docs/_generated/``, which the matrix
  and errno pages include, from the runs of every example the gallery has
  today. A build that has no run at all fails instead of publishing empty
  tables; so does an example page whose runs are not on disk.
"""

from __future__ import annotations

import html
import math
import os
import pickle
import re
from pathlib import Path

import socklab
from socklab_summary import ERROR_COLUMNS, LISTED_MESSAGES, MATRIX_COLUMNS, errno_rows, error_rows, matrix_row

GENERATED = "_generated"


#: Suffix of the file that keeps an example's runs, next to its generated page.
RUNS_SUFFIX = ".runs.pickle"


def runs_file(target: Path) -> Path:
    """Where the runs of the example whose generated copy is `target` (``.../stem.py``) are kept."""
    return target.with_name(target.stem + RUNS_SUFFIX)


def save_runs(path: Path, runs: list[socklab.Run]) -> None:
    """Write an example's runs, whole or not at all (a killed build leaves no half file)."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_bytes(pickle.dumps(runs, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(part, path)


def load_runs(path: Path) -> list[socklab.Run]:
    runs = pickle.loads(path.read_bytes())
    if not isinstance(runs, list) or not all(isinstance(run, socklab.Run) for run in runs):
        raise RuntimeError(f"{path} does not hold socklab runs; delete it (or run `nox -s docs -- --fresh`)")
    return runs


class PcapScraper:
    """Publishes the captures of an example's runs and keeps the runs on disk (see the module doc)."""

    def __init__(self) -> None:
        self.example: Path | None = None  # the generated copy of the example being executed
        self.runs: list[socklab.Run] = []  # its runs published so far, in order

    def __repr__(self) -> str:  # sphinx-gallery hashes the config by repr
        return "PcapScraper()"

    def __call__(self, block, block_vars, gallery_conf) -> str:
        target = Path(block_vars["target_file"])
        if target != self.example:  # the first block of another example
            self.example, self.runs = target, []
        links = []
        for value in block_vars["example_globals"].values():
            if not isinstance(value, socklab.Run) or any(value is run for run in self.runs):
                continue
            self.runs.append(value)
            if not value.packets:
                continue
            pcap = target.with_name(f"{target.stem}_{value.name}.pcap")
            value.save_pcap(pcap)
            check_pcap(pcap, len(value.packets))
            links.append(
                f":download:`{pcap.name} <{pcap.name}>`: the {len(value.packets)} packets of this "
                "build's run, to open in Wireshark or with ``tcpdump -r``."
            )
        save_runs(runs_file(target), self.runs)
        if not links:
            return ""
        body = "\n".join(f"   {line}" for line in links)
        return f"\n.. admonition:: Download the capture\n   :class: sl-download\n\n{body}\n\n"


def check_pcap(path: Path, expected: int) -> None:
    """Read a written capture back (as Wireshark would) and fail the build if it is not whole."""
    from scapy.layers.inet import TCP
    from scapy.utils import rdpcap

    got = sum(1 for packet in rdpcap(str(path)) if TCP in packet)
    if got != expected:
        raise RuntimeError(f"{path.name}: the capture file holds {got} TCP packets, the run had {expected}")


#: What conf.py names in ``image_scrapers`` (by its dotted path, so the config pickles).
pcap_scraper = PcapScraper()

#: Longest alt text a figure gets; the whole description goes below the picture.
ALT_MAX = 125


def short_alt(description: str) -> str:
    """The first clause of a figure's description (up to its first colon or full stop)."""
    text = " ".join(description.split())
    cut = min((i for i in (text.find(": "), text.find(". ")) if i > 0), default=len(text))
    short = text[:cut].rstrip(".")
    if len(short) > ALT_MAX:
        short = short[: ALT_MAX - 1].rsplit(" ", 1)[0] + "\u2026"
    return short


#: The smallest text a figure may show on a phone, in CSS px.
MIN_TEXT_PX = 11


def phone_min_width(fig) -> int:
    """The narrowest a figure may be drawn, in CSS px, for its smallest text to stay MIN_TEXT_PX.

    An SVG's unit is the point: drawn w px wide, a figure W pt wide shows an s-pt text at
    s * w / W px.
    """
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    if not sizes:
        return 0
    return math.ceil(MIN_TEXT_PX * fig.get_figwidth() * 72 / min(sizes))


#: matplotlib settings for the site's SVG figures: text stays text, drawn by the browser
#: (a ladder diagram: 28 kB instead of 101 kB with every glyph as a path; measured here).
SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "socklab"}
#: The gallery's thumbnails: a palette of this many colours (line art needs few).
THUMB_COLOURS = 16


class FigureScraper:
    """sphinx-gallery's matplotlib scraper, saving SVG, with a short alt text and the description below.

    socklab's figures carry their description in words as an invisible axes title, which is
    where sphinx-gallery takes ``:alt:`` from. A screen reader reads all of an alt text at
    once, with no way to skip, so the alt becomes the description's first clause and the
    whole description follows the picture in a ``<details>`` element. SVG: sharp at any
    zoom, and about 70% lighter per page than PNG (measured on this site), text as text
    (``SVG_RC``). The picture is
    wrapped in ``div.sl-figure``, which on a phone keeps it wide enough for its smallest
    text to stay at 11 px and lets it scroll sideways (``socklab.css``).

    The gallery's thumbnail of an example is its first figure: sphinx-gallery copies an SVG
    whole (a gallery index of 26 such thumbnails weighed 2.5 MB), but scales a PNG, which it
    prefers when both exist. So the first figure is also saved as a small PNG next to its
    SVG (not published: the page shows the SVG), and ``lighten_thumbnails`` reduces the
    scaled thumbnails to a palette.
    """

    def __repr__(self) -> str:
        return "FigureScraper()"

    def __call__(self, block, block_vars, gallery_conf) -> str:
        import matplotlib
        import matplotlib.pyplot as plt
        from sphinx_gallery.scrapers import matplotlib_scraper

        descriptions = []
        widths = []
        numbers = plt.get_fignums()
        for number in numbers:
            widths.append(phone_min_width(plt.figure(number)))
            for ax in plt.figure(number).axes:
                # the invisible titles socklab's figures carry their description in
                for loc, artist in (("left", ax._left_title), ("center", ax.title), ("right", ax._right_title)):
                    if artist.get_text() and not artist.get_visible():
                        descriptions.append(artist.get_text())
                        ax.set_title(short_alt(artist.get_text()), loc=loc, visible=False)
        paths = block_vars["image_path_iterator"]
        if numbers and len(paths) == 0:  # the example's first figure: its thumbnail's source
            save_thumbnail_source(plt.figure(numbers[0]), Path(paths.image_path.format(1)).with_suffix(".png"),
                                  gallery_conf.get("thumbnail_size", (400, 280)))
        with matplotlib.rc_context(SVG_RC):
            rst = matplotlib_scraper(block, block_vars, gallery_conf, format="svg")
        if not rst:
            return rst
        details = "".join(
            f'<details class="sl-longdesc"><summary>The picture in words</summary><p>{html.escape(d)}</p>'
            "</details>" for d in descriptions if short_alt(d) != " ".join(d.split()))
        return (f'\n.. raw:: html\n\n   <div class="sl-figure" style="--sl-min-width: {max(widths)}px">\n'
                + rst
                + "\n.. raw:: html\n\n   </div>\n"
                + '   <p class="sl-figure-hint">On a narrow screen the picture scrolls sideways.</p>\n'
                + (f"   {details}\n" if details else "") + "\n")


def save_thumbnail_source(fig, path: Path, size: tuple[int, int]) -> None:
    """Save `fig` as a PNG about twice the thumbnail's size (sphinx-gallery scales it down)."""
    width_in, height_in = fig.get_size_inches()
    dpi = max(10, min(2 * size[0] / width_in, 2 * size[1] / height_in))
    fig.savefig(path, format="png", dpi=dpi)


def lighten_thumbnails(app) -> None:
    """Reduce every gallery thumbnail (PNG) to a palette of ``THUMB_COLOURS``: a ladder's
    thumbnail then weighs about 4 kB. Runs after sphinx-gallery made them; skips those done."""
    from PIL import Image

    conf = app.config.sphinx_gallery_conf
    galleries = conf["gallery_dirs"] if isinstance(conf["gallery_dirs"], list) else [conf["gallery_dirs"]]
    for gallery in galleries:
        for thumb in (Path(app.srcdir) / gallery).glob("**/images/thumb/*.png"):
            with Image.open(thumb) as image:
                if image.mode == "P":
                    continue
                image.load()
            image.quantize(THUMB_COLOURS, method=Image.Quantize.FASTOCTREE).save(thumb, optimize=True)


figure_scraper = FigureScraper()


#: A bytes value as Python prints it: b'', b'a', b"it's".
BYTES_LITERAL = re.compile(r"(?<!\w)b'(?:[^'\\]|\\.)*'" + r'|(?<!\w)b"(?:[^"\\]|\\.)*"')


def _cell(text: str) -> str:
    """A Markdown table cell; bytes values become code, so Sphinx's smart quotes leave ``b''`` alone."""
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return BYTES_LITERAL.sub(lambda m: f"``{m.group(0)}``", text)


def _table(columns: list[str], rows: list[list[str]]) -> str:
    """A Markdown table in a ``sl-generated`` container (the build checks its spelling of states)."""
    lines = ["````{container} sl-generated", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n````\n"


def gallery_pages(examples: Path, gallery: str) -> list[str]:
    """Docnames of the example pages the gallery has today: one per ``examples/<section>/<name>.py``."""
    return sorted(f"{gallery}/{path.parent.name}/{path.stem}" for path in examples.glob("*/*.py")
                  if path.name != "__init__.py")


def published_runs(srcdir: Path, docnames: list[str]) -> list[tuple[str, socklab.Run]]:
    """(docname, run) for every run of these example pages, in page order then in the page's order."""
    found = []
    for doc in docnames:
        path = srcdir / f"{doc}{RUNS_SUFFIX}"
        if not path.is_file():
            raise RuntimeError(f"socklab: the runs of {doc} are not on disk ({path.name}), so the matrix and "
                               "errno tables would miss them; build again (its example will run) or run "
                               "`nox -s docs -- --fresh`")
        found += [(doc, run) for run in load_runs(path)]
    return found


def _write_if_changed(path: Path, text: str) -> None:
    """Rewrite only a changed file: Sphinx re-reads the pages that include it when its time changes."""
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def examples_dir(app) -> tuple[Path, str]:
    """(the examples' directory, the gallery's directory under the source) that conf.py names."""
    conf = app.config.sphinx_gallery_conf
    examples, gallery = conf["examples_dirs"], conf["gallery_dirs"]
    examples = examples[0] if isinstance(examples, list) else examples
    gallery = gallery[0] if isinstance(gallery, list) else gallery
    return (Path(app.confdir) / examples).resolve(), gallery


def write_tables(app) -> None:
    srcdir = Path(app.srcdir)
    examples, gallery = examples_dir(app)
    runs = published_runs(srcdir, gallery_pages(examples, gallery))
    if not runs:
        raise RuntimeError("socklab: no scenario ran in this build, so the matrix and errno tables would "
                           "be empty; check sphinx_gallery_conf['filename_pattern'] and that plot_gallery is on")
    out = srcdir / GENERATED
    out.mkdir(exist_ok=True)
    matrix = [[f"{{doc}}`/{doc}`", *matrix_row(run)] for doc, run in runs if run.summary]
    errnos = [[f"{{doc}}`/{doc}`", *row] for doc, run in runs for row in errno_rows(run)]
    where = f"on Linux {runs[0][1].kernel}, run when their pages were built"
    _write_if_changed(out / "matrix.md", f"*Generated from {len(matrix)} scenario runs {where}.*\n\n"
                      + _table(["scenario", *MATRIX_COLUMNS], matrix))
    _write_if_changed(out / "errno.md", f"*Every failed call of {len(runs)} scenario runs {where}.*\n\n"
                      + _table(["scenario", "call", "by", "socket state before the call", "errno"], errnos))


def _label(message: str) -> str:
    """The reference label of a message's section: ``error-connection-reset-by-peer``."""
    return "error-" + re.sub(r"[^a-z0-9]+", "-", message.lower()).strip("-")


def error_index(runs: list[tuple[str, socklab.Run]]) -> str:
    """The error-message index (Markdown) of `runs` ((docname, run) pairs); RuntimeError when a
    message of ``LISTED_MESSAGES`` was produced by none of them."""
    by_message: dict[str, list[list[str]]] = {}
    for doc, run in runs:
        for row in error_rows(run):
            by_message.setdefault(row["message"], []).append(
                [f"{{doc}}`/{doc}`", f"``{run.name}``", *(row[column] for column in ERROR_COLUMNS)])
    missing = [m for m in LISTED_MESSAGES if m not in by_message]
    if missing:
        produced = ", ".join(repr(m) for m in sorted(by_message)) or "none"
        raise RuntimeError(f"socklab: the error index lists {', '.join(repr(m) for m in missing)}, which no "
                           f"scenario run of this build produced (produced: {produced}); add a scenario that "
                           "produces it, or take it off socklab_summary.LISTED_MESSAGES")
    others = sorted(m for m in by_message if m not in LISTED_MESSAGES)
    summary = [[f"{{ref}}`{m} <{_label(m)}>`", ", ".join(sorted({r[3] for r in by_message[m]})),
                str(len(by_message[m])), str(len({r[0] for r in by_message[m]}))]
               for m in LISTED_MESSAGES + others]
    parts = [_table(["message", "raised as", "failed calls", "pages"], summary)]
    for message in LISTED_MESSAGES + others:
        if message == (others[0] if others else None):
            parts.append("## Other messages this build's runs produced\n")
        level = "##" if message in LISTED_MESSAGES else "###"
        parts.append(f"({_label(message)})=\n{level} {message}\n")
        parts.append(_table(["scenario", "run", *ERROR_COLUMNS], by_message[message]))
    return "\n".join(parts)


def write_error_index(app) -> None:
    srcdir = Path(app.srcdir)
    examples, gallery = examples_dir(app)
    runs = published_runs(srcdir, gallery_pages(examples, gallery))
    if not runs:
        return  # write_tables has already failed the build, saying why
    calls = sum(1 for _doc, run in runs for call in run.calls if call.failed)
    out = srcdir / GENERATED
    out.mkdir(exist_ok=True)
    _write_if_changed(out / "errors.md",
                      f"*Every failed call ({calls}) of {len(runs)} scenario runs on Linux {runs[0][1].kernel}, "
                      "run when their pages were built, by the message a program is shown.*\n\n" + error_index(runs))


def setup(app):
    app.connect("builder-inited", write_tables, priority=900)  # after sphinx-gallery ran the examples
    app.connect("builder-inited", write_error_index, priority=901)
    app.connect("builder-inited", lighten_thumbnails, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
