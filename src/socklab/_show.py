"""show(): one call that prints in a terminal and renders on a page.

A script run by hand prints the text form. In the docs build, ``conf.py`` sets
``SOCKLAB_OUTPUT=html``; then ``show`` returns the object instead, and
sphinx-gallery renders the last expression of the cell with ``_repr_html_``
(or, for a figure, its image scraper embeds the picture). Several views given
at once are shown together, so none is lost on the page.
"""

from __future__ import annotations

import os

from ._render import Group


def _text(view: object) -> str:
    """A figure has no text form: print what it shows (its alt text) instead."""
    if hasattr(view, "savefig"):
        axes = getattr(view, "axes", [])
        alt = axes[0].get_title("left") if axes else ""
        return f"[figure] {alt}\n  (save it with fig.savefig('picture.png'))"
    return str(view)


def show(*views: object) -> object | None:
    """Print each view (a table, trace, run or figure), or hand them to the page in the docs build."""
    if os.environ.get("SOCKLAB_OUTPUT") == "html":
        if len(views) == 1:
            return views[0]
        return Group(list(views))
    for view in views:
        print(_text(view))
        print()
    return None
