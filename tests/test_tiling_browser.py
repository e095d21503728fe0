"""Headless Debian chromium opens exported viewers (issue 4): every tile request succeeds and the canvas
is not blank — over HTTP (status codes checked) and straight from ``file://``."""

from __future__ import annotations

import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import missing_service
from PIL import Image
from test_tiling import ingest_array, lib, smooth_rgb  # noqa: F401 - module-scoped IMAGELIB_HOME fixture

from imagelib.tiling.export import tile_version

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BACKGROUND = (0x1B, 0x1B, 0x1B)  # index.html's page colour

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian chromium driven by playwright (its own browser download is not used)."""
    if not CHROMIUM.exists():
        missing_service("browser", f"{CHROMIUM} not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("browser", "the playwright package is not installed")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def exports(lib: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # noqa: F811
    """A DZI viewer (JPEG) and an XYZ viewer (PNG) of one synthetic georeferenced RGB image."""
    version = ingest_array(lib, "browser", smooth_rgb(700, 900))
    out = {}
    for scheme in ("dzi", "xyz"):
        folder = tmp_path_factory.mktemp(scheme)
        tile_version(version, scheme, folder, embed=True)
        out[scheme] = folder
    return out


@pytest.fixture(scope="module")
def server(exports: dict[str, Path]) -> Iterator[str]:
    """A static HTTP server over the exports' common parent."""
    root = next(iter(exports.values())).parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def open_viewer(browser: object, url: str) -> tuple[list[tuple[str, int]], list[str], np.ndarray]:
    """Load a viewer; return (url, status) of each response, failed requests and a screenshot."""
    page = browser.new_page(viewport={"width": 800, "height": 600})
    responses: list[tuple[str, int]] = []
    failed: list[str] = []
    page.on("response", lambda r: responses.append((r.url, r.status)))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)  # viewers blend tiles in
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
    page.close()
    return responses, failed, shot


def assert_not_blank(shot: np.ndarray) -> None:
    """More than a fifth of the screen differs from the page background and it is not flat."""
    drawn = np.any(np.abs(shot.astype(int) - BACKGROUND) > 8, axis=-1)
    assert drawn.mean() > 0.2 and shot.std() > 10, (drawn.mean(), shot.std())


@pytest.mark.parametrize(("scheme", "suffix"), [("dzi", ".jpg"), ("xyz", ".png")])
def test_viewer_over_http(
    browser: object, server: str, exports: dict[str, Path], scheme: str, suffix: str
) -> None:
    responses, failed, shot = open_viewer(browser, f"{server}/{exports[scheme].name}/index.html")
    tiles = [(u, s) for u, s in responses if u.endswith(suffix)]
    assert len(tiles) >= 2, responses
    assert all(s < 400 for _, s in responses), [r for r in responses if r[1] >= 400]
    assert not failed
    assert_not_blank(shot)


@pytest.mark.parametrize("scheme", ["dzi", "xyz"])
def test_viewer_from_file_url(browser: object, exports: dict[str, Path], scheme: str) -> None:
    _, failed, shot = open_viewer(browser, (exports[scheme] / "index.html").as_uri())
    assert not failed
    assert_not_blank(shot)
