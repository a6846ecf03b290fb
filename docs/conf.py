"""Sphinx configuration: MyST pages, the executed scenario gallery, furo."""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import socklab  # noqa: E402

# Examples call socklab.show(); in the build it hands views to sphinx-gallery as HTML.
os.environ["SOCKLAB_OUTPUT"] = "html"

project = "socklab"
author = "the socklab developers"
copyright = f"2026, {author}"
release = version = socklab.__version__
BUILD_KERNEL = os.uname().release
BUILD_DATE = datetime.now(UTC).strftime("%Y-%m-%d")

extensions = [
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "sphinx.ext.autodoc",
    "socklab_gallery",
    "socklab_freshness",  # every example runs again when socklab or the platform changed
    "socklab_parallel",  # examples run on every core
    "socklab_weight",  # no page heavier than socklab_max_page_kb with its images
    "socklab_spelling",
    "matplotlib.sphinxext.plot_directive",
]
# Concept pages draw their pictures from scenarios run during the build.
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = ["svg"]  # sharp at any zoom, lighter than PNG
plot_rcparams = {"svg.fonttype": "none"}  # text as text: a third of the weight (socklab_gallery.SVG_RC)
plot_pre_code = "import socket, struct\nimport socklab"
manpages_url = "https://man7.org/linux/man-pages/man{section}/{page}.{section}.html"
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated", "auto_examples/*.ipynb", "auto_examples/**/*.ipynb"]
nitpicky = True
# No network at build time, so no intersphinx: standard-library and matplotlib types stay
# unlinked (they are listed by name). Every socklab type a signature names is documented
# in reference/api.md, so a new undocumented one fails the build.
nitpick_ignore_regex = [
    # a dataclass field's Mapping[str, object] reaches the resolver cut at its comma: "collections.abc.Mapping[str"
    (r"py:.*", r"(collections\.abc|contextlib|typing|socket|os|select|matplotlib)\.[\w.]+(\[\w+)?"),
    (r"py:(class|obj|data)", r"(object|Any|Figure|Axes|bytes|str|int|float|bool|None|list|dict|tuple|set)"),
]
myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
myst_substitutions = {"kernel": BUILD_KERNEL, "builddate": BUILD_DATE, "version": release}
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py$",  # every example runs at build time
    "ignore_pattern": r"__init__\.py",
    "subsection_order": [
        "../examples/01_local",
        "../examples/02_close",
        "../examples/03_reset",
        "../examples/04_comments",
        "../examples/05_original",
        "../examples/06_server_closed_on_you",
        "../examples/07_listeners",
        "../examples/08_waiting_sockets",
        "../examples/09_broken_pipes",
        "../examples/10_half_closed",
        "../examples/11_threads_and_forks",
        "../examples/12_slow_readers",
        "../examples/13_what_libraries_say",
        "../examples/14_across_a_network",
        "../examples/15_dead_and_vanished_peers",
        "../examples/16_timers",
    ],
    "within_subsection_order": "FileNameSortKey",
    # Shown at 160x112 CSS px; a palette PNG of about 4 kB each (socklab_gallery.lighten_thumbnails),
    # so that the gallery's index stays under socklab_max_page_kb with 40 and more examples.
    "thumbnail_size": (200, 140),
    "capture_repr": ("_repr_html_", "__repr__"),
    "ignore_repr_types": r"matplotlib[.](figure|axes|text)",
    "image_scrapers": ("socklab_gallery.figure_scraper", "socklab_gallery.pcap_scraper"),
    "run_stale_examples": False,  # an example runs when it or what it runs on changed (socklab_freshness)
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_signature": False,
    "write_computation_times": False,  # its page loads jQuery from a CDN
    "plot_gallery": "True",
}

html_theme = "furo"
html_title = "How TCP connections end"
html_static_path = ["_static"]
html_css_files = ["socklab.css"]
html_favicon = "_static/favicon.svg"
html_last_updated_fmt = "%Y-%m-%d"
html_theme_options = {
    "footer_icons": [],
    "source_repository": "",
}
html_context = {"build_kernel": BUILD_KERNEL, "build_date": BUILD_DATE}
rst_epilog = f"""
.. |kernel| replace:: {BUILD_KERNEL}
.. |builddate| replace:: {BUILD_DATE}
"""
