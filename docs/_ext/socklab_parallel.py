"""The gallery's examples run on every core, all sections at once.

Theory of operation
-------------------
sphinx-gallery executes examples one section at a time; its own ``parallel``
option runs a section's examples in worker processes but waits for the whole
section before starting the next. This site's sections hold one to five
examples, and one example (the seed's C program) sleeps 15 s on its own, so
most of a second core would sit idle at those barriers.

So, just before sphinx-gallery generates the gallery (``builder-inited``, after
``socklab_freshness`` decided what is stale), ``start_examples`` lists every
example sphinx-gallery will execute (its copy's md5 is not current) across all
sections and hands each to a pool of ``socklab_jobs`` worker processes (0, the
default: twice the CPUs this process may use, see ``jobs``), longest first by the time the
example took last time (sphinx-gallery's ``<name>.cost.json``; examples never
timed go first, the longest file first: in a fresh build the seed's 15 s of
sleeps then start at once, not half-way). Each worker calls sphinx-gallery's own
``generate_file_rst``, exactly what its serial loop and its ``parallel`` option
call, so the page is the same. sphinx-gallery's serial loop then asks for each
example in its order: ``generate_file_rst`` is wrapped to hand back the
worker's result (and replay the log records the worker made, so a warning there
fails the build as it would here); an example not handed to the pool runs here
as before. ``stop_examples`` (right after the gallery) puts the original back
and ends the pool.

Workers are started with ``spawn``: a fork of the Sphinx process (hundreds of
MiB) would make every ``socklab.run`` fork a large parent. A fresh interpreter
imports conf.py's ``docs/_ext`` path from the parent (multiprocessing passes
``sys.path``) and the scrapers by name. Whatever an example leaves behind for
the pages that collect every run, it leaves on disk (``socklab_gallery``), so
it does not matter which process ran it.

``socklab_jobs = 1`` (``sphinx-build -D socklab_jobs=1``) runs everything in
the Sphinx process, one example after another, as sphinx-gallery alone would.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

#: The pool and the futures of the examples handed to it, keyed by source file.
_pool: ProcessPoolExecutor | None = None
_futures: dict[str, Future] = {}
_started = 0.0
_workers = 1


def _original(fname, target_dir, src_dir, gallery_conf):
    """sphinx-gallery's own ``generate_file_rst``, whatever stands in its module's name now."""
    from sphinx_gallery import gen_rst

    return ORIGINAL.get("generate_file_rst", gen_rst.generate_file_rst)(fname, target_dir, src_dir, gallery_conf)


#: What start_examples replaced in sphinx-gallery's module, to put back.
ORIGINAL: dict[str, Callable] = {}


def jobs(app) -> int:
    """``socklab_jobs``, or twice the CPUs this process may use: examples spend much of their
    time waiting (for timers, a link's delay; the seed's program sleeps 15 s). Measured here on
    2 CPUs, the 46-page gallery took 29.0 s with 3 workers, 23.5 s with 4 and 21.1 s with 5
    (the seed's page alone takes 17 s); 4 keeps the machine's load near what its claims were
    measured under."""
    wanted = int(app.config.socklab_jobs)
    return wanted if wanted > 0 else 2 * len(os.sched_getaffinity(0))


def _md5(path: Path) -> str:
    from sphinx_gallery.utils import get_md5sum

    return get_md5sum(path, mode="t")


def examples_to_run(gallery_conf: dict[str, Any], md5: Callable[[Path], str] = _md5) -> list[tuple[str, Path, Path]]:
    """(file name, target dir, source dir) of every example sphinx-gallery will execute: its copy's
    md5 (sphinx-gallery's, of the file as text) is missing or not the source's."""
    found = []
    pairs = zip(_as_list(gallery_conf["examples_dirs"]), _as_list(gallery_conf["gallery_dirs"]), strict=True)
    src_root = Path(gallery_conf["src_dir"])
    for examples, gallery in pairs:
        examples_root = Path(os.path.normpath(src_root / examples))
        for src_dir in [examples_root, *sorted(p for p in examples_root.iterdir() if p.is_dir())]:
            target_dir = src_root / gallery / src_dir.relative_to(examples_root)
            for src in sorted(src_dir.glob("*.py")):
                if re.search(gallery_conf["ignore_pattern"], str(src)):
                    continue
                if not re.search(gallery_conf["filename_pattern"], str(src)):
                    continue
                kept = target_dir / f"{src.name}.md5"
                if kept.is_file() and kept.read_text() == md5(src):
                    continue  # current: sphinx-gallery will not run it
                found.append((src.name, target_dir, src_dir))
    return found


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _last_cost(target_dir: Path, fname: str) -> float:
    try:
        return float(json.loads((target_dir / f"{Path(fname).stem}.cost.json").read_text())["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("inf")  # never timed: start it first


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str, dict[str, str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        extra = {key: str(getattr(record, key)) for key in ("type", "subtype", "location")
                 if getattr(record, key, None) is not None}
        self.records.append((record.levelno, record.getMessage(), extra))


def _work(fname: str, target_dir: Path, src_dir: Path, gallery_conf: dict[str, Any]) -> tuple[Any, list]:
    """In a worker: generate one example's page; return sphinx-gallery's result and the log records."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    handler = _Records()
    sphinx_logger = logging.getLogger("sphinx")
    sphinx_logger.addHandler(handler)
    sphinx_logger.setLevel(logging.DEBUG)
    sphinx_logger.propagate = False
    try:
        return _original(fname, target_dir, src_dir, gallery_conf), handler.records
    finally:
        sphinx_logger.removeHandler(handler)


def _replay(records: list[tuple[int, str, dict[str, str]]]) -> None:
    from sphinx.util import logging as sphinx_logging

    logger = sphinx_logging.getLogger("sphinx-gallery")
    for level, message, extra in records:
        logger.log(level, message, **extra)


def _generate_file_rst(fname, target_dir, src_dir, gallery_conf):
    """sphinx-gallery's ``generate_file_rst``, answered by the pool for the examples it runs."""
    future = _futures.pop(os.path.normpath(Path(src_dir, fname)), None)
    if future is None:
        return _original(fname, target_dir, src_dir, gallery_conf)
    result, records = future.result()
    _replay(records)
    return result


def _abandon() -> None:
    """At exit, when sphinx-gallery failed before asking for every example: end the pool without
    running what is still queued (concurrent.futures would otherwise run it all before exiting)."""
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)


def start_examples(app) -> None:
    global _pool, _started, _workers
    _started = time.perf_counter()
    gallery_conf = app.config.sphinx_gallery_conf
    n = jobs(app)
    if n <= 1 or not gallery_conf["plot_gallery"] or gallery_conf["parallel"]:
        return
    todo = examples_to_run(gallery_conf)
    if len(todo) < 2:
        return
    # longest last time first; never timed (a fresh build) first of all, the longest file first
    todo.sort(key=lambda item: (-_last_cost(item[1], item[0]), -(item[2] / item[0]).stat().st_size))
    for _, target_dir, _ in todo:  # sphinx-gallery makes these before running a section; workers need them now
        (target_dir / "images" / "thumb").mkdir(parents=True, exist_ok=True)
    _workers = min(n, len(todo))
    _pool = ProcessPoolExecutor(max_workers=_workers, mp_context=multiprocessing.get_context("spawn"))
    # runs before concurrent.futures' own exit hook (these hooks run last registered first)
    getattr(threading, "_register_atexit", lambda fn: None)(_abandon)
    for fname, target_dir, src_dir in todo:
        key = os.path.normpath(Path(src_dir, fname))
        _futures[key] = _pool.submit(_work, fname, target_dir, src_dir, gallery_conf)
    from sphinx_gallery import gen_rst

    ORIGINAL["generate_file_rst"] = gen_rst.generate_file_rst
    gen_rst.generate_file_rst = _generate_file_rst


def stop_examples(app) -> None:
    global _pool, _workers
    from sphinx.util import logging as sphinx_logging
    from sphinx_gallery import gen_rst

    if "generate_file_rst" in ORIGINAL:
        gen_rst.generate_file_rst = ORIGINAL.pop("generate_file_rst")
    sphinx_logging.getLogger(__name__).info(
        f"socklab_parallel: gallery generated in {time.perf_counter() - _started:.1f} s "
        f"({_workers} process(es) running examples)")
    _workers = 1
    if _pool is not None:
        for future in _futures.values():  # handed to the pool but never asked for: a bug, say so
            future.cancel()
        left = sorted(_futures)
        _futures.clear()
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
        if left:
            raise RuntimeError(f"socklab_parallel: sphinx-gallery never asked for {left}")


def setup(app):
    app.add_config_value("socklab_jobs", 0, "")
    # after socklab_freshness (100), before sphinx-gallery generates the gallery (500)
    app.connect("builder-inited", start_examples, priority=400)
    app.connect("builder-inited", stop_examples, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
