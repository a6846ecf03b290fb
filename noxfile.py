"""Sessions: docs (build the site, every example executed), browser, tests, lint, bench.

Each session installs what it needs into its own virtualenv and starts from
nothing an earlier session left: the docs session deletes the previous build and
the generated gallery, so every example runs again against the current code.
"""

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "docs"]
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
BUILD = ROOT / "docs" / "_build" / "html"


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site into docs/_build/html (warnings are errors)."""
    session.install("-e", ".[docs]")
    build_site(session, *session.posargs)


def build_site(session: nox.Session, *sphinx_args: str) -> None:
    """Build from nothing: every example runs again against the current code."""
    for stale in ("docs/_build", "docs/auto_examples", "docs/gen_modules", "docs/_generated",
                  "docs/sg_execution_times.rst"):
        path = ROOT / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", str(BUILD), *sphinx_args)
    session.log(f"site built: open {BUILD / 'index.html'} or run: python3 -m http.server -d {BUILD}")


@nox.session
def browser(session: nox.Session) -> None:
    """Build the site, serve it and check it in headless Chromium; saves screenshots."""
    session.install("-e", ".[docs]", "playwright>=1.40")
    build_site(session)
    session.run("python", "docs/_tools/browser_check.py", str(BUILD), *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest options after --)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "examples", "docs", "noxfile.py")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Measure what observation costs (median wall times, printed as a table)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/bench.py", *session.posargs)
