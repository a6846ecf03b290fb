"""Text and HTML for tables: one model, two renderings.

Every view (states, trace, calls) is a ``Table``: a title, column names, rows of
cells, a CSS class per row (the row a page talks about is emphasised), and
notes under it. ``str()`` gives the terminal form, ``_repr_html_`` the page
form that sphinx-gallery embeds; both come from the same cells, so the text a
reader gets from ``python script.py`` is what the page shows.
"""

from __future__ import annotations

import dataclasses
import html


@dataclasses.dataclass
class Table:
    """A table: printed as aligned text (``str``), rendered as HTML on a page (``_repr_html_``)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    classes: list[str] = dataclasses.field(default_factory=list)  #: per row: "", "rst", "changed"...
    notes: list[str] = dataclasses.field(default_factory=list)
    empty: str = "(none)"
    mono: bool = True
    spelling: str = "ss"  #: how its states are spelled: "ss" (a table), or "kernel" (quoting the kernel)

    def __str__(self) -> str:
        lines = [self.title] if self.title else []
        if not self.rows:
            if self.empty:
                lines.append(f"  {self.empty}")
        else:
            widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]
            marks = self.classes or [""] * len(self.rows)
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)).rstrip())
            for row, mark in zip(self.rows, marks, strict=True):
                prefix = "> " if mark else "  "
                lines.append(prefix + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        out = ['<div class="socklab sl-kernel">' if self.spelling == "kernel" else '<div class="socklab">']
        if self.title:
            out.append(f'<p class="sl-title">{html.escape(self.title)}</p>')
        if not self.rows:
            if self.empty:
                out.append(f'<p class="sl-empty">{html.escape(self.empty)}</p>')
        else:
            out.append('<div class="sl-scroll"><table class="sl-table'
                       + (' sl-mono' if self.mono else '') + '"><thead><tr>')
            out += [f"<th>{html.escape(c)}</th>" for c in self.columns]
            out.append("</tr></thead><tbody>")
            marks = self.classes or [""] * len(self.rows)
            for row, mark in zip(self.rows, marks, strict=True):
                cls = f' class="sl-{mark}"' if mark else ""
                out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table></div>")
        out += [f'<p class="sl-note">{html.escape(n)}</p>' for n in self.notes]
        out.append("</div>")
        return "".join(out)


@dataclasses.dataclass
class Group:
    """Several tables shown together (the three moments of a scenario)."""

    parts: list

    def __str__(self) -> str:
        return "\n\n".join(str(p) for p in self.parts)

    def _repr_html_(self) -> str:
        return '<div class="socklab-group">' + "".join(p._repr_html_() for p in self.parts) + "</div>"


@dataclasses.dataclass
class Lines:
    """A block of preformatted lines (the tcpdump-style trace)."""

    title: str
    lines: list[str]
    classes: list[str] = dataclasses.field(default_factory=list)
    empty: str = "(no packets)"

    def __str__(self) -> str:
        body = self.lines or [self.empty]
        return "\n".join(([self.title] if self.title else []) + [f"  {line}" for line in body])

    def _repr_html_(self) -> str:
        out = ['<div class="socklab">']
        if self.title:
            out.append(f'<p class="sl-title">{html.escape(self.title)}</p>')
        out.append('<pre class="sl-trace">')
        marks = self.classes or [""] * len(self.lines)
        for line, mark in zip(self.lines, marks, strict=True):
            cls = f' class="sl-{mark}"' if mark else ""
            out.append(f"<span{cls}>{html.escape(line)}</span>\n")
        if not self.lines:
            out.append(html.escape(self.empty))
        out.append("</pre></div>")
        return "".join(out)
