"""No stale example page: every example runs again when what it ran on changed.

Theory of operation
-------------------
sphinx-gallery re-runs an example only when the example's own file changed: it
keeps the file's md5 next to the generated page (``<name>.py.md5``) and skips
an example whose md5 matches (with ``run_stale_examples`` off, as conf.py sets
it, so that a rebuild after a prose edit takes seconds). But a page also shows
what socklab, this machine's kernel and the build's libraries did: a change
there must run every example again, or the site would publish a page of the
old code.

So when the configuration is read (``config-inited``), ``set_stamp`` computes a
*stamp*: a hash of every file of the imported ``socklab`` package and of
``docs/_ext/`` and ``conf.py`` (they turn runs into pages), with the kernel
release, the Python and library versions, and the isolation this process gets
(root or not, namespace, capture). It is the config value ``socklab_stamp``,
so a new stamp makes Sphinx read every page again (concept pages draw their
pictures from runs too). Before sphinx-gallery looks (``builder-inited``, after
it filled its configuration, before it generates the gallery),
``check_freshness`` compares it with the stamp the gallery was built with
(``<gallery>/.socklab-stamp``); when they differ, it deletes every example's
md5, so sphinx-gallery runs them all, and the plot directive's outputs, so
concept pages run theirs again; the stamp is written after that. A build that
dies half-way leaves the examples it did not re-run without an md5, so they
run next time: deleting is the invalidation, and it is on disk.

It also deletes the md5 of an example whose runs are not on disk
(``socklab_gallery`` needs them for the matrix and errno tables), and the
generated page, md5 and runs of an example whose source is gone (sphinx-gallery
leaves them, and an orphan page fails the build).

What the stamp does not see: tools the examples call (a C compiler, netstat)
appearing or going. ``nox -s docs -- --fresh`` builds from nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path

import socklab
from socklab_gallery import RUNS_SUFFIX, examples_dir

STAMP = ".socklab-stamp"
#: Libraries whose versions change what a page shows.
LIBRARIES = ("sphinx", "sphinx-gallery", "matplotlib", "scapy", "myst-parser", "furo")


def _hash_files(digest, root: Path, pattern: str) -> None:
    for path in sorted(root.rglob(pattern)):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")


def stamp(confdir: Path) -> str:
    """What every example page depends on beyond its own file, as one hash (see the module doc)."""
    digest = hashlib.sha256()
    _hash_files(digest, Path(socklab.__file__).parent, "*.py")
    _hash_files(digest, confdir / "_ext", "*.py")
    digest.update((confdir / "conf.py").read_bytes())
    iso = socklab.probe()
    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=none")
    facts = [platform.release(), sys.version, f"euid={os.geteuid()}", f"isolation={iso.mode}",
             f"capture={iso.capture}", *versions]
    digest.update("\n".join(facts).encode())
    return digest.hexdigest()


def invalidate(gallery: Path, examples: Path, current: str, plots: Path | None = None) -> list[str]:
    """Delete what makes sphinx-gallery (and the plot directive's outputs in `plots`) skip a stale
    example; return what was done, for the log."""
    done = []
    old = (gallery / STAMP).read_text().strip() if (gallery / STAMP).is_file() else ""
    if old != current:
        md5s = list(gallery.glob("*/*.py.md5"))
        for md5 in md5s:
            md5.unlink()
        if md5s:
            done.append(f"socklab, the kernel or the build's libraries changed: all {len(md5s)} examples run again")
        if plots is not None and plots.is_dir():
            shutil.rmtree(plots)
    for copy in gallery.glob("*/*.py"):
        runs = copy.with_name(copy.stem + RUNS_SUFFIX)
        md5 = copy.with_name(copy.name + ".md5")
        if not (examples / copy.parent.name / copy.name).is_file():  # the example is gone
            for path in (copy, md5, runs, copy.with_suffix(".rst")):
                path.unlink(missing_ok=True)
            done.append(f"{copy.parent.name}/{copy.name} is gone: its page removed")
        elif md5.is_file() and not runs.is_file():
            md5.unlink()
            done.append(f"{copy.parent.name}/{copy.name} runs again: its runs are not on disk")
    gallery.mkdir(parents=True, exist_ok=True)
    (gallery / STAMP).write_text(current + "\n")
    return done


def set_stamp(app, config) -> None:
    config.socklab_stamp = stamp(Path(app.confdir))


def check_freshness(app) -> None:
    from sphinx.util import logging

    examples, gallery = examples_dir(app)
    plots = Path(app.doctreedir).parent / "plot_directive"  # where matplotlib's plot directive keeps its outputs
    for line in invalidate(Path(app.srcdir) / gallery, examples, app.config.socklab_stamp, plots):
        logging.getLogger(__name__).info(line)


def setup(app):
    app.add_config_value("socklab_stamp", "", "env")
    app.connect("config-inited", set_stamp)
    # after sphinx-gallery's configuration (priority 10), before it generates the gallery (500)
    app.connect("builder-inited", check_freshness, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
