"""In headless chromium through the local hub: log in on the IdP's page (the hub's authorization code +
PKCE flow), pick the CPU profile, JupyterLab opens in the spawned server, a notebook shows a
``DeepZoomViewer`` on a version and its tiles come through the extension behind the hub's proxy."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.hub_support import Platform, platform

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("hub-browser")) as running_platform:
        yield running_platform


def notebook(version: str) -> dict:
    """One cell showing a viewer of ``version`` (no basemap: no internet here)."""
    source = (
        "from imagelib.widgets import DeepZoomViewer\n"
        f"v = DeepZoomViewer({version!r}, basemap=None)\n"
        "display(v.widget)"
    )
    cell = {
        "cell_type": "code",
        "id": "c0",
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": source,
    }
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"cells": [cell], "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}


def test_login_spawn_lab_and_viewer_tiles_through_the_hub(hub: Platform) -> None:
    from tests.conftest import missing_service

    if not CHROMIUM.exists():
        missing_service("browser", f"{CHROMIUM} not installed")
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing_service("browser", f"{exc.name} is not installed")
    from PIL import Image

    home = hub.hub.state / "users" / "alice"  # the spawner's home_dir_template
    (home / ".jupyter").mkdir(parents=True, exist_ok=True)
    (home / "view.ipynb").write_text(json.dumps(notebook(hub.landsat)))
    # the test drives Lab through window.jupyterapp, which Lab only exposes when asked
    (home / ".jupyter" / "jupyter_server_config.json").write_text(
        json.dumps({"LabApp": {"expose_app_in_browser": True}})
    )
    url = hub.hub.url
    tiles: list[tuple[int, str]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.on(
            "response", lambda r: tiles.append((r.status, r.url)) if "/imagelib/tiles/" in r.url else None
        )
        try:
            page.goto(f"{url}/hub/oauth_login")
            page.wait_for_selector("#kc-form-login")
            page.fill("#username", "alice")
            page.fill("#password", "alice-password")
            page.click("#kc-login")
            page.wait_for_url(f"{url}/hub/spawn*")
            assert page.locator("input[name=profile][value=gpu]").count() == 1  # both profiles offered
            page.check("input[name=profile][value=cpu]")
            page.locator("form#spawn_form [type=submit]").click()
            page.wait_for_url(f"{url}/user/alice/lab*", timeout=240_000)
            page.goto(f"{url}/user/alice/lab/tree/view.ipynb")
            page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
            with contextlib.suppress(PlaywrightTimeout):  # Lab may ask which kernel: take the proposed one
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10_000)
            page.wait_for_function(
                "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                timeout=120_000,
            )
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(
                "document.querySelector('.leaflet-container img.leaflet-tile-loaded') !== null",
                timeout=120_000,
            )
            page.wait_for_load_state("networkidle")
            shot = page.locator(".leaflet-container").first.screenshot()
        except Exception:
            page.screenshot(path=str(hub.hub.state / "page.png"))
            print("screenshot:", hub.hub.state / "page.png", "tile responses:", tiles[:6])
            raise
        finally:
            browser.close()
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), float)
    assert pixels.std() > 10, "the map is blank"
    assert tiles and all(u.startswith(f"{url}/user/alice/imagelib/tiles/{hub.landsat}") for _, u in tiles)
    assert all(status == 200 for status, _ in tiles), [t for t in tiles if t[0] != 200][:5]
