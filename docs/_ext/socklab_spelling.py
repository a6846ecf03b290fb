"""The vocabulary rule, checked on the built site: one spelling of the states per table,
note and picture.

Theory of operation
-------------------
``socklab.State`` knows three spellings of every state (``ss``, RFC 9293, the
kernel's). The site's rule (stated on the "Reading the output" page): a table
spells states as ``ss`` does, a picture as RFC 9293 does. After the HTML is
written (``build-finished``), every page is read back and cut into units:

* each table and each note that socklab rendered (``div.socklab``) and each
  generated site-wide table (``div.sl-generated``): every state word in it must
  be an ``ss`` spelling; where the table quotes the kernel (its events,
  ``div.sl-kernel``), the kernel's;
* each image's alt text (the words of a ladder or state diagram): every state
  word must be an RFC 9293 spelling;
* everywhere else (every paragraph, list item, table, caption and definition
  of the site's prose, code literals included; code listings, the API
  reference and the legend of spellings, ``div.sl-spellings``, excepted): no
  state may be spelled two ways, since the same unit then names one state
  twice.

A state word is any spelling of any state, matched as a whole word, upper
case. The build fails naming the page, the unit and the words.
"""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

from socklab import State

SPELLINGS = {
    "ss": {s.ss for s in State},
    "rfc": {s.rfc for s in State},
    # Bare "CLOSE" is left out: in prose it is RFC 9293's CLOSE call far more often than
    # the kernel's name for the closed state (which is then written TCP_CLOSE).
    "kernel": {s.name for s in State if s is not State.CLOSE} | {s.kernel for s in State},
}
_ALL = sorted(set().union(*SPELLINGS.values()), key=len, reverse=True)
_WORD = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in _ALL) + r")(?![\w-])")


def state_words(text: str) -> list[str]:
    """The state spellings in `text`, in order."""
    return _WORD.findall(text)


def spelled_two_ways(text: str) -> list[str]:
    """The states that `text` names in more than one spelling, each as "A / B"."""
    seen: dict[State, list[str]] = {}
    for word in state_words(text):
        state = State.parse(word).machine
        if word not in seen.setdefault(state, []):
            seen[state].append(word)
    return [" / ".join(words) for words in seen.values() if len(words) > 1]


def misspelled(text: str, system: str) -> list[str]:
    """The state words of `text` that are not `system`'s spelling ("ss" or "rfc")."""
    return [w for w in state_words(text) if w not in SPELLINGS[system]]


_PROSE = ("p", "li", "table", "figcaption", "dd", "dt", "th", "h1", "h2", "h3")
_VOID = ("br", "img", "hr", "meta", "link", "input", "wbr", "source", "col")


class _Units(html.parser.HTMLParser):
    """Collects (kind, text) units: socklab tables and notes, generated tables, image alts,
    and the prose units (outermost paragraph, list item, table...) of everything else."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: list[tuple[str, str]] = []
        self._stack: list[str] = []  # open tags, with a marker on those that start a unit
        self._depth_in = {"socklab": 0, "generated": 0, "kernel": 0, "skip": 0}
        self._unit: list[str] | None = None
        self._unit_tag: str | None = None
        self._unit_depth = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "img" and attributes.get("alt"):
            self.units.append(("alt text", attributes["alt"] or ""))
        if tag in _VOID:
            return
        self._stack.append(tag)
        depth = len(self._stack)
        if tag == "div" and ("socklab" in classes or "sl-generated" in classes):
            self._depth_in["generated" if "sl-generated" in classes else "socklab"] = depth
            if "sl-kernel" in classes:
                self._depth_in["kernel"] = depth
        api = tag == "dl" and "py" in classes  # the API reference documents the spellings themselves
        if (tag in ("pre", "script", "style") or "sl-spellings" in classes or "highlight" in classes or api) \
                and not self._depth_in["skip"]:
            self._depth_in["skip"] = depth
        if self._unit is not None or self._depth_in["skip"]:
            return
        if self._depth_in["socklab"] or self._depth_in["generated"]:
            if tag == "table" or (tag == "p" and "sl-note" in classes):
                self._unit, self._unit_depth = [], depth
                self._unit_tag = ("kernel " if self._depth_in["kernel"] else "") + tag
        elif tag in _PROSE:
            self._unit, self._unit_tag, self._unit_depth = [], "prose", depth

    def handle_endtag(self, tag):
        if not self._stack or tag in _VOID or tag not in self._stack:
            return
        while self._stack:
            open_tag = self._stack.pop()
            if self._unit is not None and len(self._stack) < self._unit_depth:
                kind = {"table": "table", "p": "note", "kernel table": "kernel table",
                        "kernel p": "kernel note"}.get(self._unit_tag or "", "prose")
                self.units.append((kind, " ".join(self._unit)))
                self._unit = self._unit_tag = None
            for key, depth in self._depth_in.items():
                if depth and len(self._stack) < depth:
                    self._depth_in[key] = 0
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self._unit is not None and not self._depth_in["skip"] and data.strip():
            self._unit.append(data.strip())


def problems_in(page: str) -> list[str]:
    """Every unit of an HTML page that breaks the rule, described."""
    parser = _Units()
    parser.feed(page)
    found = []
    for kind, text in parser.units:
        if kind == "prose":
            twice = spelled_two_ways(text)
            if twice:
                found.append(f"prose {text[:80]!r}...: {', '.join(twice)} (one state spelled two ways)")
            continue
        system = "rfc" if kind == "alt text" else "kernel" if kind.startswith("kernel") else "ss"
        wrong = misspelled(text, system)
        if wrong:
            name = {"rfc": "RFC 9293's", "kernel": "the kernel's", "ss": "ss's"}[system]
            found.append(f"{kind} {text[:80]!r}...: {', '.join(dict.fromkeys(wrong))} (not {name} spelling)")
    return found


def check_site(outdir: Path) -> list[str]:
    """Problems on every page of a built site, as "page: problem"."""
    return [f"{page.relative_to(outdir)}: {problem}" for page in sorted(outdir.rglob("*.html"))
            if "_modules" not in page.parts for problem in problems_in(page.read_text(errors="replace"))]


def check_after_build(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    problems = check_site(Path(app.outdir))
    if problems:
        raise RuntimeError("socklab: states spelled against the site's rule (a table as ss, a picture as "
                           "RFC 9293):\n- " + "\n- ".join(problems))


def setup(app):
    app.connect("build-finished", check_after_build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
