"""Sessions: docs (build the site, every example executed), docs-compare, browser, tests, matrix, lint,
package, bench.

Each session installs what it needs into its own virtualenv. A virtualenv is
reused while what was installed into it has not changed (``install``: the same
packages for the same pyproject.toml); a clean clone, as in CI, creates them.
``--reuse-venv=never`` recreates them anyway.

The docs session builds incrementally: an example runs again when its file
changed, or socklab, docs/_ext, conf.py, the kernel, Python or a library did
(``docs/_ext/socklab_freshness.py``), so a page never shows the run of older
code. ``nox -s docs -- --fresh`` deletes the previous build and the generated
gallery first.

``tests`` runs on the Python that runs nox; ``matrix`` runs the same suite on
every supported Python (3.11, 3.12, 3.13), which nox finds as ``python3.X`` on
PATH or, failing that, under pyenv's ``versions/``. A missing one is skipped,
except in CI (``CI=true``), where nox fails on it.
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "docs"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
BUILD = ROOT / "docs" / "_build" / "html"
PYTHONS = ["3.11", "3.12", "3.13"]


def _pyenv_pythons_on_path() -> None:
    """Put pyenv's interpreters for PYTHONS on PATH where PATH has none (or only pyenv's shim).

    A shim runs only the versions pyenv is told to use, and fails for the others.
    """
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    extra = []
    for minor in PYTHONS:
        found = sorted(versions.glob(f"{minor}.*/bin/python{minor}"),
                       key=lambda p: tuple(int(n) for n in p.parent.parent.name.split(".") if n.isdigit()))
        on_path = shutil.which(f"python{minor}")
        if found and (on_path is None or os.sep + "shims" + os.sep in on_path):
            extra.append(str(found[-1].parent))
    if extra:
        os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])


_pyenv_pythons_on_path()


def install(session: nox.Session, *args: str) -> None:
    """``session.install(*args)``, unless this virtualenv already had exactly that installed
    for this pyproject.toml (pip takes seconds to say so; this takes none)."""
    location = getattr(session.virtualenv, "location", None)
    if not location:
        session.install(*args)
        return
    wanted = hashlib.sha256("\0".join([*args, (ROOT / "pyproject.toml").read_text(),
                                        (ROOT / "src" / "socklab" / "_version.py").read_text()]).encode()).hexdigest()
    stamp = Path(location) / ".socklab-installed"
    if stamp.is_file() and stamp.read_text() == wanted:
        session.log(f"reusing {location}: {' '.join(args)} installed for this pyproject.toml")
        return
    stamp.unlink(missing_ok=True)
    session.install(*args)
    stamp.write_text(wanted)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site into docs/_build/html (warnings are errors); `-- --fresh` builds from nothing."""
    install(session, "-e", ".[docs]")
    args = [arg for arg in session.posargs if arg != "--fresh"]
    build_site(session, *args, fresh="--fresh" in session.posargs)


@nox.session(name="docs-compare")
def docs_compare(session: nox.Session) -> None:
    """Build the site twice from nothing, examples one after another and on every core; the pages must
    show the same apart from times (docs/_tools/compare_builds.py)."""
    install(session, "-e", ".[docs]")
    serial, parallel = ROOT / "docs" / "_build" / "serial", ROOT / "docs" / "_build" / "parallel"
    build_site(session, "-D", "socklab_jobs=1", fresh=True, out=serial)
    build_site(session, fresh=True, out=parallel)
    session.run("python", "docs/_tools/compare_builds.py", str(serial), str(parallel))


GENERATED = ("docs/auto_examples", "docs/gen_modules", "docs/_generated", "docs/sg_execution_times.rst")


def build_site(session: nox.Session, *sphinx_args: str, fresh: bool = False, out: Path = BUILD) -> None:
    """Build the site into `out`; with `fresh`, from nothing (every example runs again)."""
    if fresh:
        for stale in (*GENERATED, out.relative_to(ROOT)):
            path = ROOT / stale
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", str(out), *sphinx_args)
    session.log(f"site built: open {out / 'index.html'} or run: python3 -m http.server -d {out}")


@nox.session
def browser(session: nox.Session) -> None:
    """Build the site, serve it and check it in headless Chromium (desktop and phone, contrast); saves screenshots."""
    install(session, "-e", ".[docs]", "playwright>=1.40")
    build_site(session)
    session.run("python", "docs/_tools/browser_check.py", str(BUILD), *session.posargs)


def run_tests(session: nox.Session) -> None:
    install(session, "-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on the Python running nox (pass pytest options after --)."""
    run_tests(session)


@nox.session(python=PYTHONS)
def matrix(session: nox.Session) -> None:
    """Run the test suite on each supported Python."""
    run_tests(session)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package."""
    install(session, "-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "examples", "docs", "noxfile.py")
    session.run("mypy")


@nox.session
def package(session: nox.Session) -> None:
    """Build sdist and wheel, twine check them, install the wheel here and use its CLI away from the checkout."""
    session.install("build>=1.2", "twine>=6.1")
    dist = Path(tempfile.mkdtemp(prefix="socklab-dist-"))
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    session.run("twine", "check", "--strict", *map(str, dist.iterdir()))
    wheel = next(dist.glob("*.whl"))
    session.install(str(wheel))
    away = Path(tempfile.mkdtemp(prefix="socklab-away-"))
    with session.chdir(away):  # no checkout here: what runs is the installed wheel
        session.run("python", "-c", "import socklab, sys; assert 'site-packages' in socklab.__file__, socklab.__file__")
        session.run("socklab", "--version")
        listed = session.run("socklab", "list", silent=True) or ""
        if "close_then_send" not in listed:
            session.error(f"`socklab list` from the wheel does not list close_then_send:\n{listed}")
        out = session.run("socklab", "run", "close_then_send", silent=True, env={"MPLBACKEND": "Agg"}) or ""
        if "EPIPE" not in out:
            session.error(f"`socklab run close_then_send` from the wheel did not print EPIPE:\n{out}")
        session.run("socklab", "run", "no_such_scenario", success_codes=[2], silent=True)
    shutil.rmtree(dist)
    shutil.rmtree(away)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure what observation and the site cost beside their floor and targets (`-- --site` builds the
    site in a copy and weighs its pages; `-- --help` for the rest)."""
    install(session, "-e", ".[docs]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
