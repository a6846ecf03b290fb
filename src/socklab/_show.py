"""show(): one call that prints in a terminal and renders on a page.

A script run by hand prints the text form. In the docs build, ``conf.py`` sets
``SOCKLAB_OUTPUT=html``; then ``show`` returns the object instead, and
sphinx-gallery renders the last expression of the cell with ``_repr_html_``.
"""

from __future__ import annotations

import os


def show(view: object) -> object | None:
    """Print `view` (a table, trace or run), or hand it to the page in the docs build."""
    if os.environ.get("SOCKLAB_OUTPUT") == "html":
        return view
    print(view)
    print()
    return None
