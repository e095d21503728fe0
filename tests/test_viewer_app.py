"""The Panel app ``imagelib viewer`` (issue 10, item 3): share-link state ↔ URL query, the app's pieces
without a browser (browser search, histogram, lineage, coded errors in place), the tile routes over HTTP
under a proxy prefix, and headless Debian chromium: choose a dataset, tiles load, change the chain, open
the share link in a fresh context and see the same version, chain and viewport."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from conftest import free_port, missing_service

import imagelib
from imagelib.errors import ImagelibError
from imagelib.filters import canonical_chain
from imagelib.tiling import render_tile
from imagelib.tiling.scale import Style
from imagelib.viewer.state import ViewState, from_params, from_query

CHROMIUM = Path("/usr/bin/chromium")
PREFIX = "/user/ana/imagelib-viewer"
GAUSS = [{"op": "gaussian", "sigma": 2}]
GAUSS_Q = "?chain=" + quote(json.dumps(GAUSS), safe="")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict[str, Any]]:
    """One IMAGELIB_HOME with two ingested samples and a derived version of the first."""
    root = tmp_path_factory.mktemp("viewer")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGELIB_HOME", str(root / "home"))
        mp.delenv("IMAGELIB_STORE", raising=False)
        mp.delenv("IMAGELIB_CATALOG", raising=False)
        rgb = imagelib.ingest(str(data_dir / "RGB.byte.tif"), "samples", "rgb")["version"]
        shade = imagelib.ingest(str(data_dir / "shade.tif"), "other", "shade")["version"]
        derived = imagelib.apply(rgb, [{"op": "gaussian", "sigma": 1.5}])
        import tifffile

        vol = np.full((20, 120, 80), 100, np.uint16)
        vol[8:12] = 1000  # bright middle slices
        tifffile.imwrite(root / "vol.ome.tif", vol, ome=True, metadata={"axes": "ZYX"})
        volume = imagelib.ingest(str(root / "vol.ome.tif"), "micro", "vol")["version"]
        yield {"home": root / "home", "rgb": rgb, "shade": shade, "derived": derived, "volume": volume}


# ---- state ↔ URL ------------------------------------------------------------------------------------


def test_share_link_state_round_trips_through_the_query() -> None:
    chain = canonical_chain([{"op": "gaussian", "sigma": 1.5}, {"op": "median", "size": 3}])
    state = ViewState(
        "0123456789abcdef0123456789abcdef",
        chain,
        Style(bands=(1,), rescale=(2.5, 300.0), colormap="viridis"),
        "z",
        7,
        0.25,
        0.375,
        3.5,
    )
    query = state.to_query()
    assert query.startswith("?version=0123456789abcdef0123456789abcdef&chain=")
    back = from_query("http://host/app/" + query)
    assert back == state
    assert back.to_query() == query  # canonical: the same view always gives the same link
    # a hand-written link names the same view once canonicalised (defaults filled, order fixed)
    loose = from_params({"version": state.version, "chain": json.dumps([{"sigma": 1.5, "op": "gaussian"}])})
    assert loose.chain == canonical_chain([{"op": "gaussian", "sigma": 1.5}])
    assert from_query("") == ViewState()


def test_viewport_is_rounded_so_links_are_stable() -> None:
    state = ViewState("0123456789abcdef0123456789abcdef").with_viewport(0.1234567891, 0.5, 2.00000004)
    assert (state.x, state.y, state.zoom) == (0.123457, 0.5, 2.0)
    assert "x=0.123457&y=0.5&zoom=2" in state.to_query()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"version": "not-a-version"}, "USAGE"),
        ({"chain": "[{"}, "CHAIN_INVALID"),
        ({"chain": '[{"op": "nope"}]'}, "OP_UNKNOWN"),
        ({"bands": "0"}, "BAND_INDEX_INVALID"),
        ({"zoom": "-1"}, "USAGE"),
        ({"x": "nan"}, "USAGE"),
        ({"colormap": "rainbow-unicorn"}, "USAGE"),
    ],
)
def test_a_malformed_link_is_a_coded_error(params: dict[str, str], code: str) -> None:
    with pytest.raises(ImagelibError) as info:
        from_params(params)
    assert info.value.code == code


# ---- the app's pieces, no browser -------------------------------------------------------------------


def test_browser_searches_through_the_library(lib: dict[str, Any]) -> None:
    from imagelib.viewer import pieces

    everything = {r["version"] for r in pieces.find()}
    assert {lib["rgb"], lib["shade"], lib["derived"]} <= everything
    assert {r["version"] for r in pieces.find(namespace="other")} == {lib["shade"]}
    assert lib["rgb"] in {r["version"] for r in pieces.find(namespace="samples", dataset="rgb")}
    assert lib["shade"] not in {r["version"] for r in pieces.find(dataset="rgb")}
    assert {r["version"] for r in pieces.find(dtype="float32")} == {lib["derived"]}
    west, south, east, north = imagelib.search()[0]["bounds_4326"]
    inside = f"{west},{south},{(west + east) / 2},{(south + north) / 2}"
    assert lib["rgb"] in {r["version"] for r in pieces.find(bbox=inside)}
    assert lib["rgb"] not in {r["version"] for r in pieces.find(bbox="0,0,1,1")}
    menus = pieces.choices()
    assert menus["namespace"] == ["micro", "other", "samples"]
    assert menus["dtype"] == ["float32", "uint16", "uint8"]
    with pytest.raises(ImagelibError) as info:
        pieces.find(bbox="1,2,3")
    assert info.value.field == "bbox"


def test_histogram_counts_every_valid_pixel_of_a_coarse_level(lib: dict[str, Any]) -> None:
    from imagelib.viewer import pieces

    hist = pieces.histogram(lib["rgb"])
    level = imagelib.open(lib["rgb"], hist["level"])
    assert max(level.sizes["y"], level.sizes["x"]) <= pieces.HIST_SIDE
    assert len(hist["counts"]) == 3 and len(hist["edges"]) == pieces.BINS + 1
    values = level.values
    nodata = level.attrs["nodata"]  # RGB.byte.tif marks its collar 0: not counted
    valid = values != nodata
    assert nodata == 0 and sum(hist["counts"][0]) == valid[0].sum() < values[0].size
    assert hist["edges"][0] == values[valid].min() and hist["edges"][-1] == values[valid].max()
    pieces.histogram_plot(hist)  # renders as HoloViews


def test_lineage_graph_and_clicking_a_node_opens_it(lib: dict[str, Any]) -> None:
    from imagelib.viewer import pieces
    from imagelib.viewer.app import ViewerApp

    graph = pieces.lineage_graph(lib["derived"])
    where = {n["version"]: n["x"] for n in graph["nodes"]}
    assert where == {lib["derived"]: 0.0, lib["rgb"]: -1.0}
    assert graph["edges"] == [
        {"parent": lib["rgb"], "child": lib["derived"], "operation": graph["edges"][0]["operation"]}
    ]
    app = ViewerApp()
    assert app.open(lib["derived"])
    parent = next(i for i, n in enumerate(app._graph["nodes"]) if n["version"] == lib["rgb"])
    app._tap.event(index=[parent])  # what a tap on the node sends
    assert app.state.version == lib["rgb"]
    assert app.view.descriptor.endswith(f"/tiles/{lib['rgb']}.dzi")


def test_app_restores_a_share_link_and_keeps_the_url_in_sync(lib: dict[str, Any]) -> None:
    from imagelib.viewer.app import ViewerApp

    app = ViewerApp(prefix=PREFIX)
    app.results.value = lib["shade"]  # choosing in the browser opens the version
    assert app.state.version == lib["shade"] and not app.error.visible
    assert app.view.descriptor == f"{PREFIX}/tiles/{lib['shade']}.dzi"
    app.chain.value = json.dumps(GAUSS)
    app.apply.clicks += 1
    app.colormap.value = "magma"
    app.view.param.update(x=0.4, y=0.3, zoom=2.5)  # what the browser sends after a pan/zoom
    link = app.share.value
    assert link.startswith(f"{PREFIX}/?version={lib['shade']}")
    state = from_query(link)
    assert state.chain == canonical_chain(GAUSS) and state.style.colormap == "magma"
    assert (state.x, state.y, state.zoom) == (0.4, 0.3, 2.5)
    assert f'src="{link.replace("&", "&amp;")}"' in app.embed.value
    again = ViewerApp(_params(link), prefix=PREFIX)
    assert again.state == app.state and again.view.descriptor == app.view.descriptor
    assert (again.view.x, again.view.y, again.view.zoom) == (0.4, 0.3, 2.5)


def _params(link: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(link.split("?", 1)[1]))


def test_a_volume_shows_one_slice_with_a_slider(lib: dict[str, Any]) -> None:
    from imagelib.viewer.app import ViewerApp

    app = ViewerApp()
    assert app.open(lib["volume"])
    assert app.index.visible and (app.index.end, app.index.value, app.axis.value) == (19, 10, "z")
    assert app.view.descriptor.endswith("?axis=z&index=10")
    app.index.value = 3
    assert from_query(app.share.value).index == 3 and app.view.descriptor.endswith("&index=3")
    middle = render_tile(lib["volume"], 7, 0, 0, fmt="png", axis="z", index=10)
    assert render_tile(lib["volume"], 7, 0, 0, fmt="png", axis="z", index=3) != middle
    app.index.value = 25  # beyond the volume: refused in place, the view stays on slice 3
    assert app.error.object.startswith("[USAGE]") and app.view.descriptor.endswith("&index=3")
    app.index.value = 3
    again = ViewerApp(_params(app.share.value))
    assert again.state == app.state and again.index.value == app.state.index


def test_the_slice_axis_choice_and_an_x_slice_link(
    lib: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The axis picker shows that axis's middle slice, whole; an axis=x share link restores it."""
    from imagelib.tiling import renderer_for
    from imagelib.viewer.app import ViewerApp

    app = ViewerApp()
    assert app.open(lib["volume"])
    app.view.param.update(x=0.3, y=0.2, zoom=3.0)  # a pan/zoom on the z slice (120 × 80)
    assert from_query(app.share.value).zoom == 3.0
    app.axis.value = "x"  # (z, y) = 20 × 120: another shape, so the old viewport does not apply
    assert app.error.visible is False and (app.state.axis, app.state.index) == ("x", 40)
    assert (app.index.end, app.index.value) == (79, 40)
    assert app.view.descriptor.endswith("?axis=x&index=40") and app.view.zoom is None
    grid = renderer_for(lib["volume"], axis="x", index=40).dzi_grid()
    assert (grid.height, grid.width) == (20, 120)
    app.index.value = 79
    link = app.share.value
    assert _params(link)["axis"] == "x" and _params(link)["index"] == "79"
    again = ViewerApp(_params(link))
    assert again.state == app.state and (again.axis.value, again.index.value, again.index.end) == (
        "x",
        79,
        79,
    )
    assert again.view.descriptor == app.view.descriptor
    alone = ViewerApp({"version": lib["volume"], "axis": "y"})  # the axis alone: its middle slice
    assert (alone.state.axis, alone.state.index, alone.index.end) == ("y", 60, 119)
    bad = ViewerApp({"version": lib["volume"], "axis": "x", "index": "80"})
    assert bad.error.object.startswith("[USAGE]") and "along x" in bad.error.object

    def broken(state: Any) -> str:
        raise ImagelibError("no y slices today")

    monkeypatch.setattr(app, "descriptor", broken)
    app.axis.value = "y"  # refused in place: the picker goes back, the x slice stays
    assert "no y slices today" in app.error.object and app.axis.value == "x"
    assert app.view.descriptor.endswith("?axis=x&index=79") and app.state.axis == "x"


def test_errors_are_shown_in_place_and_the_view_stays(lib: dict[str, Any]) -> None:
    from imagelib.viewer.app import ViewerApp

    missing = ViewerApp({"version": "0" * 32})
    assert missing.error.visible and missing.error.object.startswith("[VERSION_NOT_FOUND]")
    assert missing.view.message.startswith("[VERSION_NOT_FOUND]")  # an empty map says why
    app = ViewerApp({"version": lib["rgb"]})
    good = app.view.descriptor
    for field, value, code in [
        ("chain", '[{"op": "gaussian", "sigma": -3}]', "PARAM_INVALID"),
        ("chain", "[{", "CHAIN_INVALID"),
        ("bands", "4", "BAND_INDEX_INVALID"),
        ("rescale", "9,1", "USAGE"),
    ]:
        widget = getattr(app, field)
        widget.value = value
        if field == "chain":
            app.apply.clicks += 1
        assert app.error.visible and app.error.object.startswith(f"[{code}]"), app.error.object
        assert "Traceback" not in app.error.object
        assert app.view.descriptor == good  # the last good view stays on the map
        widget.value = ""
        app._edit()
    assert not app.error.visible


# ---- the served app over HTTP, behind a proxy prefix ------------------------------------------------


@pytest.fixture(scope="module")
def server(lib: dict[str, Any]) -> Iterator[str]:
    """``imagelib viewer`` as a subprocess, served under ``PREFIX`` as jupyter-server-proxy does."""
    port = free_port()
    env = {**os.environ, "IMAGELIB_HOME": str(lib["home"]), "IMAGELIB_VIEWER_PREFIX": PREFIX}
    env["IMAGELIB_VIEWER_ALLOW_ORIGIN"] = "*"  # as the jupyter-server-proxy entry sets it
    env.pop("IMAGELIB_STORE", None)
    env.pop("IMAGELIB_CATALOG", None)
    cmd = [sys.executable, "-m", "imagelib", "viewer", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    assert line == f"http://127.0.0.1:{port}{PREFIX}/", (line, proc.stderr.read() if proc.poll() else "")
    base = f"http://127.0.0.1:{port}{PREFIX}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/viewer-static/openseadragon.min.js", timeout=5)
            break
        except OSError:
            time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body (errors included)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_tiles_under_the_prefix_match_render_tile(server: str, lib: dict[str, Any]) -> None:
    version = lib["rgb"]
    status, headers, page = get(f"{server}/?version={version}")
    assert status == 200 and b"<html" in page.lower()
    status, headers, body = get(f"{server}/tiles/{version}_files/9/1_0.png" + GAUSS_Q)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == render_tile(version, 9, 1, 0, fmt="png", chain=GAUSS)
    assert "immutable" in headers["Cache-Control"] and headers["Access-Control-Allow-Origin"] == "*"
    again, _, empty = get(
        f"{server}/tiles/{version}_files/9/1_0.png" + GAUSS_Q,
        {"If-None-Match": headers["Etag"]},
    )
    assert again == 304 and empty == b""
    status, _, xml = get(f"{server}/tiles/{version}.dzi")
    assert status == 200 and b'Width="791"' in xml and b'Height="718"' in xml
    bad, _, body = get(f"{server}/tiles/{version}.dzi?chain=%5B%7B")
    assert bad == 400 and json.loads(body)["error"]["code"] == "CHAIN_INVALID"
    missing, _, body = get(f"{server}/tiles/{'0' * 32}_files/0/0_0.jpg")
    assert missing == 404 and json.loads(body)["error"]["code"] == "VERSION_NOT_FOUND"
    outside, _, body = get(f"{server}/tiles/{version}_files/9/99_0.jpg")
    assert outside == 404 and json.loads(body)["error"]["code"] == "TILE_NOT_FOUND"
    root = server.removesuffix(PREFIX)
    assert get(f"{root}/tiles/{version}.dzi")[0] == 404  # only under the prefix


def test_viewer_refuses_a_non_loopback_host(lib: dict[str, Any]) -> None:
    env = {**os.environ, "IMAGELIB_HOME": str(lib["home"])}
    cmd = [sys.executable, "-m", "imagelib", "viewer", "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "USAGE" in done.stderr and "Traceback" not in done.stderr


# ---- chromium ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian chromium driven by playwright."""
    if not CHROMIUM.exists():
        missing_service("browser", f"{CHROMIUM} not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("browser", "the playwright package is not installed")
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


VIEWPORT = {"width": 1400, "height": 1000}
DRAWN = """() => { const v = window.imagelibViewer; if (!v || !v.world.getItemCount()) return false;
  return v.world.getItemAt(0).getFullyLoaded(); }"""
VISIBLE = """() => window.imagelibViewer.world.getItemAt(0).lastDrawn
  .map(e => (e.tile || e).getUrl()).sort()"""
PIXELS = """() => { const c = window.imagelibViewer.drawer.canvas;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 16) { const g = d[i] + d[i+1] + d[i+2]; s += g; s2 += g*g; n++; }
  return Math.sqrt(s2 / n - (s / n) ** 2); }"""


def settle(page: Any) -> list[str]:
    """Wait until the image is fully loaded and drawn; the URLs of the tiles drawn last frame."""
    page.wait_for_function(DRAWN, timeout=60000)
    page.wait_for_timeout(800)  # blending and the viewport's round trip to Python
    page.wait_for_function(DRAWN, timeout=60000)
    return page.evaluate(VISIBLE)


@pytest.mark.browser
def test_choose_dataset_change_chain_and_reopen_the_share_link(
    browser: Any, server: str, lib: dict[str, Any]
) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    tiles: list[tuple[str, int]] = []
    failed: list[str] = []
    page.on("response", lambda r: tiles.append((r.url, r.status)) if "/tiles/" in r.url else None)
    # a tile request the viewer itself cancels while panning (net::ERR_ABORTED) is not a failure
    page.on(
        "requestfailed",
        lambda r: None if "ERR_ABORTED" in (r.failure or "") else failed.append(f"{r.url} {r.failure}"),
    )
    page.goto(server + "/")
    page.locator(".imagelib-results select").select_option(value=None, label=_label(lib["rgb"]))
    first = settle(page)
    assert first and all(lib["rgb"] in u and "chain=" not in u for u in first)
    assert page.evaluate(PIXELS) > 10  # not blank
    # change the chain: new tile URLs, all loaded
    page.locator(".imagelib-chain textarea").fill(json.dumps(GAUSS))
    page.locator(".imagelib-apply button").click()
    page.wait_for_function("() => location.search.includes('chain=')", timeout=30000)
    page.wait_for_timeout(300)
    chained = settle(page)
    assert chained and all("chain=" in u for u in chained) and set(chained).isdisjoint(first)
    # pan and zoom like a user; the URL follows
    page.evaluate(
        "() => { const v = window.imagelibViewer.viewport;"
        " v.zoomTo(2.5); v.panTo(new OpenSeadragon.Point(0.62, 0.41)); }"
    )
    page.wait_for_function("() => location.search.includes('zoom=2.5')", timeout=30000)
    here = settle(page)
    assert all(status < 400 for _, status in tiles), [t for t in tiles if t[1] >= 400]
    assert not failed
    link = page.locator(".imagelib-share input").input_value()
    assert link == page.evaluate("location.href")
    state = from_query(link)
    assert state.version == lib["rgb"] and state.chain == canonical_chain(GAUSS)
    assert state.zoom == 2.5 and abs(state.x - 0.62) < 1e-3
    context.close()
    # a fresh context (no cache, no session) restores exactly that view
    fresh = browser.new_context(viewport=VIEWPORT)
    again = fresh.new_page()
    again.goto(link)
    restored = settle(again)
    assert restored == here
    assert again.evaluate(PIXELS) > 10
    assert from_query(again.evaluate("location.href")) == state
    # a share link's side panels join after the map's first draw: they arrive, showing this view
    shared = again.locator(".imagelib-share input").input_value()
    assert from_query(shared) == state
    fresh.close()


def _label(version: str) -> str:
    from imagelib.viewer import pieces

    return next(pieces.label(r) for r in pieces.find() if r["version"] == version)


@pytest.mark.browser
def test_bad_share_link_shows_the_coded_error_in_the_page(browser: Any, server: str) -> None:
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(f"{server}/?version={'0' * 32}")
    # the Alert's text lives in its shadow root; the map's own note says the same
    shown = """() => { const out = [];
      const walk = (root) => root.querySelectorAll('*').forEach((e) => {
        if (e.matches('.imagelib-error, .imagelib-osd-error'))
          out.push((e.shadowRoot ? e.shadowRoot.textContent : '') + e.textContent);
        if (e.shadowRoot) walk(e.shadowRoot);
      });
      walk(document); return out; }"""
    page.wait_for_function(f"() => ({shown})().filter(t => t.includes('[VERSION_NOT_FOUND]')).length >= 2")
    assert "Traceback" not in " ".join(page.evaluate(shown))
    page.wait_for_function("() => window.imagelibViewer")
    assert page.evaluate("window.imagelibViewer.world.getItemCount()") == 0  # nothing half-shown
    page.close()


@pytest.mark.browser
def test_an_x_slice_link_restores_and_the_axis_choice_reshapes(
    browser: Any, server: str, lib: dict[str, Any]
) -> None:
    """A share link naming an x slice opens that (z, y) image; choosing y in the page shows a (z, x) one."""
    page = browser.new_page(viewport=VIEWPORT)
    tiles: list[tuple[str, int]] = []
    page.on("response", lambda r: tiles.append((r.url, r.status)) if "/tiles/" in r.url else None)
    page.goto(f"{server}/?version={lib['volume']}&axis=x&index=40")
    drawn = settle(page)
    size = (
        "() => { const d = window.imagelibViewer.world.getItemAt(0).source.dimensions; return [d.x, d.y]; }"
    )
    assert page.evaluate(size) == [120, 20]  # (z, y) = 20 rows × 120 columns
    assert drawn and all("axis=x&index=40" in u for u in drawn)
    assert page.evaluate(PIXELS) > 10  # drawn: the bright z slices 8..11 are a band across it
    page.locator(".imagelib-axis select").select_option("y")
    page.wait_for_function("() => location.search.includes('axis=y')", timeout=30000)
    page.wait_for_timeout(300)
    settle(page)
    assert page.evaluate(size) == [80, 20] and "index=60" in page.evaluate("location.search")
    assert all(status < 400 for _, status in tiles), [t for t in tiles if t[1] >= 400]
    page.close()


@pytest.mark.postgres
def test_app_on_postgresql_and_s3(pg_url: str, s3_store: str, data_dir: Path) -> None:
    """Configuration only: the app reaches catalog and store through the library context."""
    from imagelib.viewer import pieces
    from imagelib.viewer.app import ViewerApp

    version = imagelib.ingest(str(data_dir / "shade.tif"), "remote", "shade")["version"]
    assert imagelib.search()[0]["storage_url"].startswith(s3_store)
    app = ViewerApp()
    app.namespace.value = "remote"
    assert [v for v in app.results.options.values() if v] == [version]
    app.results.value = version
    assert not app.error.visible and app.view.descriptor == f"/tiles/{version}.dzi"
    assert sum(pieces.histogram(version)["counts"][0]) > 0
    assert render_tile(version, 10, 0, 0, fmt="png")[:8] == b"\x89PNG\r\n\x1a\n"
