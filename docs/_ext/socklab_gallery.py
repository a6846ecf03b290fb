"""Sphinx glue for socklab: pcap downloads and the pages generated from all runs.

* ``pcap_scraper`` (a sphinx-gallery image scraper): after each code block, every
  ``socklab.Run`` in the example's globals not yet published gets its capture
  written next to the generated page and a ``:download:`` link. The file is the
  capture of this build's run.
* The same scraper remembers every run with its page. When sphinx-gallery has
  executed all examples (``builder-inited``, after sphinx-gallery's own handler),
  ``write_tables`` writes the "what happens when" matrix and the errno table
  into ``docs/_generated/``, which the matrix and errno pages include. A build
  that executed no scenario fails instead of publishing empty tables.
"""

from __future__ import annotations

from pathlib import Path

import socklab
from socklab_summary import MATRIX_COLUMNS, errno_rows, matrix_row

GENERATED = "_generated"


class PcapScraper:
    def __init__(self) -> None:
        # id -> (docname, run): every run published so far (holding the run keeps its id unique)
        self.runs: dict[int, tuple[str, socklab.Run]] = {}

    def __repr__(self) -> str:  # sphinx-gallery hashes the config by repr
        return "PcapScraper()"

    def __call__(self, block, block_vars, gallery_conf) -> str:
        target = Path(block_vars["target_file"])
        docname = target.relative_to(Path(gallery_conf["src_dir"])).with_suffix("").as_posix()
        links = []
        for value in block_vars["example_globals"].values():
            if not isinstance(value, socklab.Run) or id(value) in self.runs:
                continue
            self.runs[id(value)] = (docname, value)
            if not value.packets:
                continue
            pcap = target.with_name(f"{target.stem}_{value.name}.pcap")
            value.save_pcap(pcap)
            check_pcap(pcap, len(value.packets))
            links.append(
                f":download:`{pcap.name} <{pcap.name}>`: the {len(value.packets)} packets of this "
                "build's run, to open in Wireshark or with ``tcpdump -r``."
            )
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


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows: list[list[str]]) -> str:
    """A Markdown table in a ``sl-generated`` container (the build checks its spelling of states)."""
    lines = ["````{container} sl-generated", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n````\n"


def write_tables(app) -> None:
    runs = sorted(pcap_scraper.runs.values(), key=lambda item: item[0])
    if not runs:
        raise RuntimeError("socklab: no scenario ran in this build, so the matrix and errno tables would "
                           "be empty; check sphinx_gallery_conf['filename_pattern'] and that plot_gallery is on")
    out = Path(app.srcdir) / GENERATED
    out.mkdir(exist_ok=True)
    matrix = [[f"{{doc}}`/{doc}`", *matrix_row(run)] for doc, run in runs if run.summary]
    errnos = [[f"{{doc}}`/{doc}`", *row] for doc, run in runs for row in errno_rows(run)]
    kernel = runs[0][1].kernel
    (out / "matrix.md").write_text(
        f"*Generated from {len(matrix)} scenario runs on Linux {kernel} during this build.*\n\n"
        + _table(["scenario", *MATRIX_COLUMNS], matrix))
    (out / "errno.md").write_text(
        f"*Every failed call of {len(runs)} scenario runs on Linux {kernel} during this build.*\n\n"
        + _table(["scenario", "call", "by", "socket state before the call", "errno"], errnos))


def setup(app):
    app.connect("builder-inited", write_tables, priority=900)  # after sphinx-gallery ran the examples
    return {"parallel_read_safe": True, "parallel_write_safe": True}
