"""Share link → first tile drawn in the Panel app (issue 10: target ≤ 1.5 s on the sample data, 2 cores).

    python benchmarks/viewer.py [--loads 3]

Ingests ``RGB.byte.tif`` (718×791 RGB GeoTIFF, ../shared/data) into a fresh IMAGELIB_HOME, starts
``imagelib viewer`` as a subprocess and opens a share link (version + gaussian chain + a zoomed
viewport) in headless Debian chromium, each load in a fresh browser context (no HTTP cache, new Bokeh
session). The time is the page's own ``performance`` mark ``imagelib-first-tile`` (set by the app when
OpenSeadragon first draws tiles), measured from navigation start, with the navigation's ``responseEnd``
(the server building the session's page) alongside.

* ``cold``: the first load after the server starts (imports, first renderer, chunk reads, tile renders);
* ``warm``: ``--loads`` further loads of the same link (tiles in the server's tile cache, session code
  imported), median and range; each load starts once the previous page has drawn its plots.

Prints a JSON document and a markdown row for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

import imagelib
from imagelib.viewer.state import ViewState

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"
SETTLE_MS = 6000
FIRST_TILE = """() => { const m = performance.getEntriesByName('imagelib-first-tile')[0];
  const nav = performance.getEntriesByType('navigation')[0];
  return m ? {first_tile_ms: m.startTime, page_ms: nav.responseEnd} : null; }"""


def free_port() -> int:
    """An unused loopback port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(home: Path) -> tuple[subprocess.Popen[str], str]:
    """``imagelib viewer`` on a free port; returns the process and its URL once it answers."""
    port = free_port()
    env = {**os.environ, "IMAGELIB_HOME": str(home)}
    for name in ("IMAGELIB_STORE", "IMAGELIB_CATALOG", "IMAGELIB_VIEWER_PREFIX"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "imagelib", "viewer", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip() if proc.stdout else ""
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "viewer-static/openseadragon.min.js", timeout=5)
            return proc, url
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("imagelib viewer did not start")


def load(browser: Any, link: str) -> dict[str, float]:
    """One fresh-context page load of ``link``; the page's own timings in ms."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(link)
    page.wait_for_function(FIRST_TILE, timeout=120000)
    timing = page.evaluate(FIRST_TILE)
    # let this session finish drawing its plots (deferred until the first tiles, on the server's one
    # event loop) so the next load measures a warm, idle server rather than this page's tail
    page.wait_for_timeout(SETTLE_MS)
    context.close()
    return timing


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=3, help="warm page loads (≥ 3)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["IMAGELIB_HOME"] = str(home)
        version = imagelib.ingest(str(DATA / "RGB.byte.tif"), "bench", "rgb")["version"]
        view = ViewState(version).with_viewport(0.4, 0.35, 2.0)
        chained = ViewState(version, [{"op": "gaussian", "sigma": 2.0, "truncate": 4.0}])
        proc, url = start(home)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                link = url + chained.with_viewport(view.x, view.y, view.zoom).to_query()
                cold = load(browser, link)
                warm = [load(browser, link) for _ in range(max(args.loads, 3))]
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    firsts = [w["first_tile_ms"] for w in warm]
    result = {
        "machine": machine(),
        "link": link.split("?", 1)[1],
        "cold": {k: round(v) for k, v in cold.items()},
        "warm_first_tile_ms": {
            "median": round(statistics.median(firsts)),
            "min": round(min(firsts)),
            "max": round(max(firsts)),
            "loads": len(firsts),
        },
        "warm_page_ms_median": round(statistics.median(w["page_ms"] for w in warm)),
    }
    print(json.dumps(result, indent=2))
    w = result["warm_first_tile_ms"]
    print(
        f"| share link → first tile (chromium) | {w['median'] / 1000:.2f} s ({w['min'] / 1000:.2f}–"
        f"{w['max'] / 1000:.2f}) warm, {cold['first_tile_ms'] / 1000:.2f} s cold | ≤ 1.5 s |"
    )


if __name__ == "__main__":
    main()
