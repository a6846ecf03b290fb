"""Open the built site in headless Chromium, as a reader would, and fail on anything broken.

Checks: every page loads with no console errors, no failed requests and no
broken images; every internal link points at a file that exists; the search
finds "EPIPE"; every image has an alt text of at most 150 characters (empty for a
decorative one). Then every
page again at phone width (390 px), light and dark:

* nothing is wider than the screen but what scrolls on purpose (figures);
* every trace line, flags included, is on screen without scrolling the trace;
* the smallest text in every SVG figure renders at 11 px or more (read from the
  SVG: matplotlib draws a glyph run at ``scale(size/100)`` in points);
* socklab's tables, traces and notes meet WCAG AA contrast (4.5:1; 3:1 for
  large or bold text) against the background they are drawn on.

Saves screenshots of the landing page and one scenario page at desktop and
phone widths, light and dark, into docs/_build/screenshots/.

Usage: python docs/_tools/browser_check.py [docs/_build/html] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
ALT_MAX = 150
MIN_TEXT_PX = 11.0
GLYPH_SCALE = re.compile(r"scale\(([0-9.]+) -\1\)")

#: WCAG 2 contrast of every text node inside socklab's output against its effective background.
CONTRAST_JS = """
() => {
  const rgba = s => { const m = s.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let bg = [255, 255, 255, 1];
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  const out = [];
  for (const el of document.querySelectorAll(".socklab *, .sl-provenance, details.sl-longdesc *")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const fg = over(rgba(style.color), background(el));
    const bg = background(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    const what = el.textContent.trim().slice(0, 40);
    const on = `rgb(${bg.slice(0, 3).map(Math.round)})`;
    if (ratio < need) out.push(`${ratio.toFixed(2)}:1 < ${need}:1 for "${what}" (${style.color} on ${on})`);
  }
  return out;
}
"""

#: At phone width: the page does not scroll sideways, traces show every line whole, figures' sizes.
PHONE_JS = """
() => {
  const out = [];
  const width = document.documentElement.clientWidth;
  const wide = document.documentElement.scrollWidth;
  if (wide > width + 1) out.push(`the page is ${wide} px wide on a ${width} px screen`);
  for (const pre of document.querySelectorAll("pre.sl-trace")) {
    if (pre.scrollWidth > pre.clientWidth + 1)
      out.push(`a trace scrolls sideways (${pre.scrollWidth} px in ${pre.clientWidth} px): flags off screen`);
  }
  const figures = [...document.querySelectorAll(".sl-figure img, article figure img")]
    .filter(img => img.currentSrc.endsWith(".svg"))
    .map(img => ({src: img.currentSrc, shown: img.getBoundingClientRect().width}));
  return {problems: out, figures};
}
"""


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
    for src, alt in page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src, i.getAttribute('alt')])"):
        # alt="" marks a decorative image (a gallery thumbnail inside a link named by its text)
        if alt is None or len(alt) > ALT_MAX:
            problems.append(f"image {src.rsplit('/', 1)[-1]}: " + ("no alt attribute" if alt is None else
                            f"alt text of {len(alt)} characters (want at most {ALT_MAX}; the long "
                            "description belongs below the picture)"))
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


def smallest_text_pt(svg: Path) -> tuple[float, float]:
    """(smallest glyph size in the SVG's units, the SVG's width in the same units)."""
    text = svg.read_text()
    sizes = [float(s) * 100 for s in GLYPH_SCALE.findall(text)]
    width = float(re.search(r'viewBox="[\d.]+ [\d.]+ ([\d.]+)', text).group(1))
    return (min(sizes) if sizes else float("inf")), width


def check_phone(page, base: str, root: Path, path: str) -> list[str]:
    """Phone-width checks of one page (already loaded): overflow, traces, figure text size, contrast."""
    result = page.evaluate(PHONE_JS)
    problems = list(result["problems"])
    for figure in result["figures"]:
        svg = root / unquote(urlparse(figure["src"]).path).lstrip("/")
        size, width = smallest_text_pt(svg)
        # the SVG's user unit is 1 pt: drawn `shown` px wide, a size-pt glyph is size * shown / width px
        px = size * figure["shown"] / width
        if px < MIN_TEXT_PX:
            problems.append(f"figure {svg.name}: smallest text {px:.1f} px at phone width (want >= {MIN_TEXT_PX})")
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
                width, height = SIZES["phone"]
                ctx = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                                          device_scale_factor=1)
                for path in pages:
                    page = ctx.new_page()
                    page.goto(base + path, wait_until="load")
                    problems = check_phone(page, base, args.root, path)
                    problems += [f"contrast ({scheme}): {p}" for p in page.evaluate(CONTRAST_JS)]
                    page.close()
                    if problems:
                        failures.setdefault(f"{path} (phone, {scheme})", []).extend(problems)
                print(f"phone width, {scheme}: {len(pages)} pages checked")
                ctx.close()
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
    print(f"all {len(pages)} pages load with no console errors, broken links or images, short alt texts; "
          "at phone width in both themes: no sideways page, whole trace lines, figure text >= 11 px, AA contrast")
    return 0


if __name__ == "__main__":
    sys.exit(main())
