"""Open the built site in headless Chromium, as a reader would, and fail on anything broken.

Checks: every page loads with no console errors, no failed requests and no
broken images; every internal link points at a file that exists; the search
finds "EPIPE". Saves screenshots of the landing page and one scenario page at
desktop and phone widths, light and dark, into docs/_build/screenshots/.

Usage: python docs/_tools/browser_check.py [docs/_build/html] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages_of(root: Path) -> list[str]:
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if p.name not in skip and "_sources" not in p.parts and "_static" not in p.parts)


def check_page(page, base: str, root: Path, path: str) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(base + path, wait_until="load")
    broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0)"
                                               ".map(i => i.src)")
    problems += [f"broken image: {src}" for src in broken]
    for href in page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)"):
        url = urlparse(urljoin(base + path, href))
        if url.scheme != "http" or not url.netloc.startswith("127.0.0.1"):
            continue
        target = root / unquote(url.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems.append(f"broken link: {href}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default="docs/_build/html", type=Path)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not (args.root / "index.html").exists():
        print(f"error: no built site at {args.root}: run `nox -s docs` first", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"error: no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    shots = args.root.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    server, base = serve(args.root)
    failures: dict[str, list[str]] = {}
    pages = pages_of(args.root)
    scenario = next(p for p in pages if p.startswith("auto_examples/02_close/01_close_then_send"))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            context = browser.new_context()
            for i, path in enumerate(pages, 1):
                page = context.new_page()
                problems = check_page(page, base, args.root, path)
                page.close()
                print(f"[{i}/{len(pages)}] {path}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
                if problems:
                    failures[path] = problems
            page = context.new_page()
            page.goto(base + "search.html?q=EPIPE", wait_until="load")
            page.wait_for_selector("ul.search li", timeout=15000)
            hits = page.eval_on_selector_all("ul.search li", "lis => lis.length")
            print(f"search for EPIPE: {hits} results")
            if not hits:
                failures["search.html"] = ["search for EPIPE found nothing"]
            page.close()
            for scheme in ("light", "dark"):
                for size, (width, height) in SIZES.items():
                    ctx = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                                              device_scale_factor=1)
                    page = ctx.new_page()
                    for name, path in (("landing", "index.html"), ("scenario", scenario)):
                        page.goto(base + path, wait_until="load")
                        out = shots / f"{name}-{size}-{scheme}.png"
                        page.screenshot(path=str(out), full_page=name == "scenario")
                    ctx.close()
            browser.close()
    finally:
        server.shutdown()
    print(f"screenshots in {shots}")
    if failures:
        for path, problems in failures.items():
            print(f"\n{path}:\n  " + "\n  ".join(problems))
        return 1
    print(f"all {len(pages)} pages load with no console errors, broken links or images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
