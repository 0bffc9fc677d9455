#!/usr/bin/env python3
"""Render RUN/report.html in headless Chromium and check that it reads.

    python bench/check_report_render.py RUN [--screenshot out.png] [--full-page]

Without a trained run, a fixture from the tests makes one (no training, a few seconds):

    python -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; \\
        from report_fixtures import make_fit_run; from headstart.report import build_fit_report; \\
        build_fit_report(make_fit_run(Path('/tmp/fit-fixture')))"
    python bench/check_report_render.py /tmp/fit-fixture

Two Chromium passes:
  1. --dump-dom on a throw-away copy of the page with one injected script that, after the load
     event, writes each <img>'s naturalWidth (0 = failed to load) and the page height into the
     DOM. The report itself carries no scripts, so the copy lives in a temp folder with links to
     the PNGs; the run folder is never written to.
  2. --screenshot of the real report.html, checked to be non-blank: enough non-white pixels
     and enough distinct colours that the figures, not just text, were painted.
Exits 0 when all checks pass, 1 with a message per failed check, 2 when it cannot run
(no report, no Chromium). Needs Debian's `chromium` package (/usr/bin/chromium) and Pillow.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 2400
TIMEOUT_S = 90

# Runs after every image has either loaded or failed, then the DOM is dumped.
PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) img.setAttribute("data-natural-width", img.naturalWidth);
  document.body.setAttribute("data-scroll-height", document.documentElement.scrollHeight);
});
</script>"""


def chromium_args(user_data_dir: str, width: int, height: int) -> list[str]:
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={user_data_dir}",
            f"--window-size={width},{height}"]


def run_chromium(extra: list[str], url: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    # A fresh profile per call: no state leaks between runs, nothing touches $HOME.
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(chromium_args(profile, width, height) + extra + [url],
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc.stdout


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src", ""))


def image_sources(html: str) -> list[str]:
    parser = ImageSources()
    parser.feed(html)
    return parser.sources


def probe_dom(report: Path) -> tuple[dict[str, int], int | None]:
    """naturalWidth of each <img> after load, and the page height, from a probed copy."""
    html = report.read_text()
    with tempfile.TemporaryDirectory(prefix="report-probe-") as tmp:
        tmp = Path(tmp)
        for src in image_sources(html):
            target = (report.parent / src).resolve()
            link = tmp / src
            if target.exists() and not src.startswith(("/", "..")) and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)  # figures in sub-folders (explanations/)
                link.symlink_to(target)
        (tmp / "report.html").write_text(html.replace("</body>", PROBE + "\n</body>", 1))
        dom = run_chromium(["--dump-dom"], (tmp / "report.html").as_uri())
    widths = {}
    for tag in re.findall(r"<img\b[^>]*>", dom):
        src = re.search(r'\bsrc="([^"]*)"', tag)
        width = re.search(r'\bdata-natural-width="(\d+)"', tag)
        if src:
            widths[src.group(1)] = int(width.group(1)) if width else -1
    height = re.search(r'data-scroll-height="(\d+)"', dom)
    return widths, int(height.group(1)) if height else None


def screenshot(report: Path, out: Path, height: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    run_chromium([f"--screenshot={out.resolve()}"], report.resolve().as_uri(), height=height)
    if not out.exists():
        raise RuntimeError("chromium wrote no screenshot")


def screenshot_problems(path: Path) -> list[str]:
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    non_white = float((rgb.min(axis=2) < 240).mean())
    colours = len(np.unique(rgb[::4, ::4].reshape(-1, 3), axis=0))
    problems = []
    # Text alone covers a few per cent of a page; figures push it well past that.
    if non_white < 0.05:
        problems.append(f"screenshot is nearly blank ({non_white:.1%} non-white pixels)")
    if colours < 50:
        problems.append(f"screenshot has only {colours} distinct colours: figures not painted?")
    return problems


def check(run_dir: Path, out: Path, full_page: bool) -> list[str]:
    report = run_dir / "report.html"
    problems = []
    sources = image_sources(report.read_text())
    if not sources:
        problems.append("report.html shows no images")
    widths, page_height = probe_dom(report)
    for src in sources:
        width = widths.get(src, -1)
        if width <= 0:
            problems.append(f"image did not load in Chromium: {src} (naturalWidth {width})")
    height = min(page_height or HEIGHT, 16000) if full_page else HEIGHT
    screenshot(report, out, height)
    problems += screenshot_problems(out)
    print(f"{report}: {len(sources)} image(s), all loaded: {all(widths.get(s, 0) > 0 for s in sources)}; "
          f"page height {page_height} px; screenshot {out} ({WIDTH}x{height})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a fit or compare run folder holding report.html")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="where to write the PNG (default: a temp file, path printed)")
    parser.add_argument("--full-page", action="store_true",
                        help="screenshot the whole page height instead of the first 2400 px")
    args = parser.parse_args(argv)

    if not (args.run_dir / "report.html").is_file():
        print(f"error: no report.html in {args.run_dir}", file=sys.stderr)
        return 2
    if not shutil.which(CHROMIUM):
        print(f"error: {CHROMIUM} not found; install Debian's chromium package", file=sys.stderr)
        return 2
    out = args.screenshot or Path(tempfile.mkdtemp(prefix="report-shot-")) / "screenshot.png"
    try:
        problems = check(args.run_dir, out, args.full_page)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if not problems:
        print("OK: report renders with every image loaded")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
