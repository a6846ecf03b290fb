"""Compare two builds of the site page by page, apart from times.

Usage: python docs/_tools/compare_builds.py SERIAL_HTML PARALLEL_HTML

Every HTML page of either build is reduced to what a reader sees in its main
article (text, alt texts of pictures, captions), with times written as ``<t>``:
trace timestamps (``0.000021``), durations (``+3.549 ms``, ``0.663 seconds``),
dates and clock times. Tables, traces, kernel events, claims, notes, errnos,
states and the matrix and errno pages must then be the same in both. Exits 1,
printing each page's differences, when they are not; a page found in one build
only is a difference too.

Besides times, three kinds of numbers differ between any two builds, serial or
not, and are written as placeholders: Unix sockets' inode numbers (the kernel
numbers sockets as it creates them), file descriptor numbers (a worker process
has other files open than the Sphinx process: the page's point is their order,
so each becomes its rank among the descriptors of the same run) and initial sequence numbers that a
trace shows absolute (RFC 6528: derived from a clock). ``VARIES`` lists, page
by page, results that differ from run to run in serial builds too (races the
page states, or a run's last packets); they are left out of the comparison, and
the list is printed, so that a reader of the check's output knows what it did
not compare. Each entry was found by comparing two serial builds or running the
page's example again, and says so.

nox's ``docs_compare`` session builds the site once with the examples one after
another in the Sphinx process (``-D socklab_jobs=1``) and once on every core,
and runs this on the two.
"""

from __future__ import annotations

import difflib
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

#: What varies between two runs of the same scenario on the same machine: times only.
TIMES = [
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?: UTC)?"),  # dates, clock times
    re.compile(r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?"),
    re.compile(r"\(\d+ minutes \d+(?:\.\d+)? seconds\)"),  # sphinx-gallery's "Total running time"
    re.compile(r"[+-]?\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s|sec|secs|seconds)\b"),  # durations
    re.compile(r"\[\d+(?:\.\d+)?(?:, \d+(?:\.\d+)?)*\] ?s\b"),  # a list of times: [0.0, 1.0, 2.03] s
    re.compile(r"(?m)^\s*\d+\.\d{6}(?=\s)"),  # a trace line's timestamp, tcpdump style
]


#: Numbers the kernel chooses anew on every run (see the module doc).
KERNEL_NUMBERS = [
    (re.compile(r"(?<=\* )\d{5,}|(?<=unix )\d{5,}"), "<inode>"),  # Unix sockets in ss-like tables
    (re.compile(r"(?<=seq )\d{7,}|(?<=ack )\d{7,}"), "<isn>"),  # absolute sequence numbers
]

#: (page, pattern): results that vary from run to run in serial builds too, left out of the comparison.
VARIES = [
    # the seed's race: FIN_WAIT1 or FIN_WAIT2 in netstat's line, on a port the kernel picks
    ("auto_examples/05_original/01_seed_c_program.html", re.compile(r"(?m)^tcp\|.*$")),
    ("auto_examples/05_original/01_seed_c_program.html", re.compile(r"(?m)^this build's run: .*$")),
    # whether the ACK of the second client's FIN goes out alone or rides on later data
    ("auto_examples/07_listeners/03_accept_queue_full.html", re.compile(r"the \d+ packets of this build")),
    ("auto_examples/07_listeners/03_accept_queue_full.html",
     re.compile(r"(?m)^<t> IP 127\.0\.0\.1\.50001 > 127\.0\.0\.1\.4321: Flags \[\.\], ack 2, .*$")),
    # the end of a run on two hosts: whether the server's last FIN (dropped by the link) is captured before the
    # capture stops; in one process, three runs of the page gave 7/7, 6/6 and 7/6 packets (idle/orphan runs)
    ("auto_examples/16_timers/01_timer_schedules.html", re.compile(r"the \d+ packets of this build")),
    ("auto_examples/16_timers/01_timer_schedules.html",
     re.compile(r"(?m)^<t> IP 192\.0\.2\.2\.4321 > 192\.0\.2\.1\.50000: Flags \[F\.\], .*<- DROPPED by the link.*$")),
    # how many tries to reuse a TIME-WAIT port failed before the kernel allowed it: a count in time
    ("auto_examples/08_waiting_sockets/03_ephemeral_ports_exhausted.html",
     re.compile(r"(?<=tries that failed first: )\d+|(?<=failed tries before the port was reused\n)\d+")),
]


def normalize(text: str) -> str:
    for pattern in TIMES:
        text = pattern.sub("<t>", text)
    for pattern, placeholder in KERNEL_NUMBERS:
        text = pattern.sub(placeholder, text)
    return text


def rank_descriptors(text: str) -> str:
    """Replace each file descriptor number (``fileno() = 24``, or a ``fileno()`` table cell) by its rank
    among its neighbours: the descriptors of one run, shown together (at most 4 lines apart)."""
    found = list(re.finditer(r"(?<=fileno\(\) = )\d+|(?<=^fileno\(\)\n)\d+(?=\n)", text, re.MULTILINE))
    clusters: list[list[re.Match]] = []
    for match in found:
        if clusters and text.count("\n", clusters[-1][-1].end(), match.start()) <= 4:
            clusters[-1].append(match)
        else:
            clusters.append([match])
    out, last = [], 0
    for cluster in clusters:
        ranks = {n: i for i, n in enumerate(sorted({int(m.group(0)) for m in cluster}))}
        for match in cluster:
            out += [text[last : match.start()], f"<fd#{ranks[int(match.group(0))]}>"]
            last = match.end()
    return "".join([*out, text[last:]])


class _Article(HTMLParser):
    """The text nodes of a page's ``<article>`` (furo's main content), and its pictures' alt texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # inside <article> when > 0
        self.skip = 0  # inside <script> or <style>
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "article" or self.depth:
            self.depth += tag not in VOID
        if tag in ("script", "style"):
            self.skip += 1
        if tag == "img" and self.depth:
            self.parts.append(f"[picture: {dict(attrs).get('alt') or ''}]")

    def handle_endtag(self, tag):
        if self.depth and tag not in VOID:
            self.depth -= 1
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.parts.append(data)


#: Elements with no end tag.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def page_text(path: Path, name: str = "") -> list[str]:
    """What a reader sees in the page's main article, one stripped line each, normalized."""
    parser = _Article()
    parser.feed(path.read_text(encoding="utf-8"))
    lines = (line.strip() for line in "\n".join(parser.parts).splitlines())
    text = rank_descriptors(normalize("\n".join(line for line in lines if line)))
    for page, pattern in VARIES:
        if page == name:
            text = pattern.sub("<varies>", text)
    return [line for line in text.splitlines() if line != "<varies>"]


def pages(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*.html")
            if not p.relative_to(root).parts[0].startswith(("_", "."))}


def compare(first: Path, second: Path) -> list[str]:
    """One message per difference between the two builds (empty when the same apart from times)."""
    a, b = pages(first), pages(second)
    problems = [f"{name}: only in {first}" for name in sorted(a.keys() - b.keys())]
    problems += [f"{name}: only in {second}" for name in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        diff = list(difflib.unified_diff(page_text(a[name], name), page_text(b[name], name), str(first / name),
                                         str(second / name), lineterm="", n=1))
        if diff:
            problems.append(f"{name}: differs apart from times\n" + "\n".join(diff[:60]))
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    first, second = map(Path, argv)
    problems = compare(first, second)
    for problem in problems:
        print(problem)
    for page, pattern in VARIES:
        print(f"not compared (varies from run to run, serial builds too): {page}: {pattern.pattern}")
    n = len(pages(first))
    print(f"compare_builds: {n} pages, {len(problems)} differ apart from times"
          + ("" if problems else f": {first} and {second} show the same"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
