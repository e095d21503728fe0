"""DeepZoomViewer, IngestWidget and the ``.imagelib`` summary: the widget models without a browser, and the
viewer's tile URLs fetched from a real ``jupyter server`` running the imagelib extension."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
import tifffile
from imagelib_jupyter.launch import JupyterServer

import imagelib
from imagelib.context import Library
from imagelib.tiling import render_tile, renderer_for
from imagelib.tiling.render import canonical
from imagelib.tiling.scale import Style
from imagelib.widgets import (
    DeepZoomViewer,
    FilterChainBuilder,
    IngestWidget,
    param_specs,
    summary_html,
    tile_base_url,
)
from imagelib.widgets.deepzoom import nice_length, scale_bar
from imagelib.widgets.urls import fill
from tests.conftest import DATA

TOKEN = "imagelib-viewer-token-41d2"
BASE = "/hub-user/"
CHAIN = [{"op": "gaussian", "sigma": 1.5}]


@dataclass
class Samples:
    lib: Library
    home: Path
    geo: str  # world.rgb.tif, EPSG:4326 RGB
    plain: str  # chessboard TIFF, no CRS, no pixel size
    micro: str  # OME-TIFF with a physical pixel size
    volume: str  # synthetic z,y,x OME-TIFF


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    root = tmp_path_factory.mktemp("viewer")
    lib = imagelib.connect(root / "home")
    vol = (np.arange(12 * 40 * 50) % 251).astype(np.uint8).reshape(12, 40, 50)
    tifffile.imwrite(root / "vol.ome.tif", vol, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5})

    def ingest(path: Path, dataset: str) -> str:
        return imagelib.ingest(path, "view", dataset, lib=lib)["version"]

    return Samples(
        lib,
        root / "home",
        ingest(DATA / "world.rgb.tif", "world"),
        ingest(DATA / "chessboard_GRAY_U16.tif", "chess"),
        ingest(DATA / "s_1_t_1_c_1_z_1.ome.tiff", "micro"),
        ingest(root / "vol.ome.tif", "vol"),
    )


def chain_of(url: str) -> list | None:
    """The chain a tile URL carries (decoded), None without one."""
    values = parse_qs(urlsplit(url).query).get("chain")
    return json.loads(values[0]) if values else None


# --- base URL rule --------------------------------------------------------------------------------


def test_base_url_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))  # no running server recorded there
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert tile_base_url() == "/"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ana/")
    assert tile_base_url() == "/user/ana/"
    assert tile_base_url("http://127.0.0.1:8888/lab") == "http://127.0.0.1:8888/lab/"  # the argument wins


# --- the viewer model ---------------------------------------------------------------------------


def test_geo_version_gets_an_xyz_layer_over_the_grid(samples: Samples) -> None:
    viewer = DeepZoomViewer(samples.geo, lib=samples.lib, base_url="/u/", basemap=None)
    grid = renderer_for(samples.geo, lib=samples.lib).xyz_grid
    assert viewer.error.value == "" and viewer.geo
    assert viewer.map.crs["name"] == "EPSG3857"
    assert viewer.map.layers == (viewer.layer,)  # basemap=None: nothing fetched from the internet
    assert viewer.layer.url == f"/u/imagelib/tiles/{samples.geo}/{{z}}/{{x}}/{{y}}.png"
    assert viewer.zoom_range == (grid.minzoom, grid.maxzoom)
    west, south, east, north = grid.lonlat
    assert viewer.layer.bounds == [[south, west], [north, east]]
    with_basemap = DeepZoomViewer(samples.geo, lib=samples.lib, base_url="/u/")
    assert len(with_basemap.map.layers) == 2 and with_basemap.map.layers[0].base


def test_plain_image_gets_a_pixel_space_map_over_the_dzi_levels(samples: Samples) -> None:
    viewer = DeepZoomViewer(samples.plain, lib=samples.lib, base_url="/u/")
    grid = renderer_for(samples.plain, lib=samples.lib).dzi_grid()
    assert viewer.error.value == "" and not viewer.geo
    assert viewer.map.crs["name"] == "Simple"
    assert viewer.layer.url == f"/u/imagelib/tiles/{samples.plain}_files/{{z}}/{{x}}_{{y}}.png"
    assert viewer.layer.tile_size == grid.tile_size
    assert viewer.zoom_range == (0, grid.levels - 1)
    # one map unit = 2**(levels-1) pixels: the bounds span the image's size at full resolution
    (s, w), (n, e) = viewer.layer.bounds
    assert ((n - s) * 2 ** (grid.levels - 1), (e - w) * 2 ** (grid.levels - 1)) == (grid.height, grid.width)
    assert "100 px" in viewer.scale.value  # no pixel size: the bar is in image pixels


def test_scale_bar_in_the_data_units(samples: Samples) -> None:
    assert [nice_length(x) for x in (0.7, 3, 99, 120, 1e-3 * 6)] == [0.5, 2, 50, 100, 5e-3]
    assert scale_bar(0.5, "µm") == (50, 100, "50 µm")
    viewer = DeepZoomViewer(samples.micro, lib=samples.lib)
    top = renderer_for(samples.micro, lib=samples.lib).dzi_grid().levels - 1
    viewer.map.zoom = top  # full resolution: 1 screen px = 1 image px = 1.0833 µm
    assert "100 µm" in viewer.scale.value and "width:92px" in viewer.scale.value
    viewer.map.zoom = top - 2  # 4 image px per screen px: 120 screen px ≈ 520 µm → a 500 µm bar
    assert "500 µm" in viewer.scale.value and "width:115px" in viewer.scale.value


def test_chain_in_the_url_follows_the_linked_builder(samples: Samples) -> None:
    builder = FilterChainBuilder(imagelib.open(samples.plain, lib=samples.lib), debounce_s=0)
    viewer = DeepZoomViewer(samples.plain, builder, lib=samples.lib, base_url="/u/")
    assert chain_of(viewer.layer.url) is None
    builder.add("gaussian")
    first = viewer.layer.url
    assert chain_of(first) == json.loads(canonical(builder.model.to_chain()))
    assert "{" not in urlsplit(first).query  # braces encoded: Leaflet sees only {z} {x} {y}
    builder.set_param(0, next(s for s in param_specs("gaussian") if s.name == "sigma"), 3.0)
    assert chain_of(viewer.layer.url)[0]["sigma"] == 3.0 and viewer.layer.url != first
    builder.remove(0)
    assert chain_of(viewer.layer.url) is None


def test_chain_given_directly_is_canonical(samples: Samples) -> None:
    viewer = DeepZoomViewer(samples.geo, [{"sigma": 1.5, "op": "gaussian"}], lib=samples.lib, basemap=None)
    assert chain_of(viewer.layer.url) == json.loads(canonical(CHAIN))


def test_errors_are_shown_in_place(samples: Samples) -> None:
    unknown = DeepZoomViewer("0" * 32, lib=samples.lib)
    assert "<b>VERSION_NOT_FOUND</b>" in unknown.error.value and unknown.map is None
    assert unknown.widget.children == (unknown.error,)
    assert "<b>USAGE</b>" in DeepZoomViewer("../etc/passwd", lib=samples.lib).error.value
    bad = DeepZoomViewer(samples.plain, [{"op": "gaussian", "sigma": -1}], lib=samples.lib)
    assert "<b>PARAM_INVALID</b>" in bad.error.value and "Traceback" not in bad.error.value
    assert (
        "<b>OP_UNKNOWN</b>" in DeepZoomViewer(samples.plain, '[{"op": "nope"}]', lib=samples.lib).error.value
    )
    # a failing edit keeps the last good view and says why
    viewer = DeepZoomViewer(samples.plain, CHAIN, lib=samples.lib)
    before = viewer.layer.url
    band = [{"op": "band_scale", "bands": [5], "in_range": [0, 1], "out_range": [0, 1]}]
    assert not viewer.set_chain(band)
    assert "<b>BAND_INDEX_INVALID</b>" in viewer.error.value and viewer.layer.url == before
    assert viewer.set_chain(None) and viewer.error.value == "" and chain_of(viewer.layer.url) is None


def test_volume_gets_slice_controls(samples: Samples) -> None:
    viewer = DeepZoomViewer(samples.volume, lib=samples.lib, base_url="/u/")
    assert viewer.error.value == "" and not viewer.geo
    assert viewer.slice_bounds == {"z": (0, 11), "y": (0, 39), "x": (0, 49)}
    assert (viewer.axis, viewer.index) == ("z", 6)
    assert (viewer.slider.min, viewer.slider.max, viewer.slider.value) == (0, 11, 6)
    # the tile URLs name the slice; the slider moves it
    assert not viewer.slider.disabled and "axis=z&index=6" in viewer.layer.url
    viewer.slider.value = 3
    assert (viewer.axis, viewer.index) == ("z", 3) and "axis=z&index=3" in viewer.layer.url
    viewer.set_slice("z", 60)
    assert "<b>USAGE</b>" in viewer.error.value and (viewer.axis, viewer.index) == ("z", 3)
    viewer.set_slice("w", 3)  # no such axis: refused, view kept
    assert "<b>USAGE</b>" in viewer.error.value and (viewer.axis, viewer.index) == ("z", 3)
    assert viewer.axis_picker.value == "z" and viewer.axis_picker.options == ("z", "y", "x")
    assert DeepZoomViewer(samples.plain, lib=samples.lib).slice_bounds == {}


def _top(viewer: DeepZoomViewer) -> int:
    return viewer.zoom_range[1]


def _shape(viewer: DeepZoomViewer) -> tuple[int, int]:
    """Full-resolution (rows, cols) the pixel-space layer's bounds span (one map unit = 2**top px)."""
    (s, w), (n, e) = viewer.layer.bounds
    return round((n - s) * 2 ** _top(viewer)), round((e - w) * 2 ** _top(viewer))


def test_volume_axis_choice_reshapes_the_map(samples: Samples) -> None:
    """y and x slices are (z, x) and (z, y) images: bounds, zooms, slider and scale bar follow."""
    viewer = DeepZoomViewer(samples.volume, lib=samples.lib, base_url="/u/")
    # x is 0.5 µm, z and y unknown (1): a z slice is resampled to 0.5 µm pixels along y (40 → 80 rows)
    assert _shape(viewer) == (80, 50)
    viewer.opacity.value = 0.4
    viewer.axis_picker.value = "y"  # the dropdown: the middle y slice
    assert viewer.error.value == "" and (viewer.axis, viewer.index) == ("y", 20)
    assert "axis=y&index=20" in viewer.layer.url
    assert (viewer.slider.min, viewer.slider.max, viewer.slider.value) == (0, 39, 20)
    assert _shape(viewer) == (24, 50)  # (z, x), z resampled to 0.5 µm: 12 → 24 rows
    assert viewer.map.layers == (viewer.layer,)  # the old slice's layer is gone
    assert viewer.layer.opacity == 0.4 and viewer.zoom_range == (0, viewer.renderer.dzi_grid().levels - 1)
    assert (viewer.map.max_zoom, viewer.map.zoom) == (_top(viewer) + 2, viewer._fit_zoom)
    viewer.map.zoom = _top(viewer)  # full resolution: 1 screen px = 0.5 µm
    assert "50 µm" in viewer.scale.value and "width:100px" in viewer.scale.value
    viewer.slider.value = 7
    assert "axis=y&index=7" in viewer.layer.url and viewer.index == 7
    viewer.opacity.value = 0.8  # the control drives the new layer
    assert viewer.layer.opacity == 0.8
    viewer.set_slice("x", 49)
    assert "axis=x&index=49" in viewer.layer.url and viewer.axis_picker.value == "x"
    assert (viewer.slider.max, viewer.slider.value) == (49, 49) and _shape(viewer) == (12, 40)  # (z, y)
    viewer.set_slice("x", 50)  # out of range along x: refused, view kept
    assert "<b>USAGE</b>" in viewer.error.value and "axis=x&index=49" in viewer.layer.url
    viewer.set_slice("z", None)
    assert viewer.error.value == "" and _shape(viewer) == (80, 50) and "axis=z&index=6" in viewer.layer.url


def test_orthogonal_slice_tiles_are_the_volume_slices(tmp_path: Path) -> None:
    """An independently made volume with cubic voxels: each tile URL the viewer shows, rendered through
    ``render_tile`` with the URL's own axis/index/style, is exactly that numpy slice."""
    import io

    from PIL import Image

    from imagelib.tiling.http import parse_tile_query

    lib = imagelib.connect(tmp_path / "home")
    rng = np.random.default_rng(7)
    vol = rng.integers(0, 256, (7, 33, 21), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cube.ome.tif", vol, ome=True, metadata={"axes": "ZYX"})
    version = imagelib.ingest(tmp_path / "cube.ome.tif", "view", "cube", lib=lib)["version"]
    viewer = DeepZoomViewer(version, lib=lib, base_url="/u/", style=Style(rescale=(0, 255)))
    for axis, index, expected in (("z", 3, vol[3]), ("y", 5, vol[:, 5, :]), ("x", 20, vol[:, :, 20])):
        viewer.set_slice(axis, index)
        assert viewer.error.value == "" and _shape(viewer) == expected.shape
        url = fill(viewer.layer.url, _top(viewer), 0, 0)
        query = parse_qs(urlsplit(url).query)
        assert (query["axis"], query["index"]) == ([axis], [str(index)])
        parsed = parse_tile_query(lambda name, q=query: q.get(name, [None])[0], 8192)
        tile = render_tile(
            version,
            _top(viewer),
            0,
            0,
            "png",
            axis=parsed.axis,
            index=parsed.index,
            style=parsed.style,
            lib=lib,
        )
        pixels = np.asarray(Image.open(io.BytesIO(tile)).convert("L"))
        np.testing.assert_array_equal(pixels, expected)


# --- the summary ----------------------------------------------------------------------------------


def test_open_result_has_an_html_summary(samples: Samples) -> None:
    data = imagelib.open(samples.geo, lib=samples.lib)
    page = data.imagelib._repr_html_()
    assert page == summary_html(data)
    for text in (samples.geo, "band 3 × y 256 × x 512", "uint8", "EPSG:4326", "levels", "<table"):
        assert text in page
    assert "pixel space" in imagelib.open(samples.plain, lib=samples.lib).imagelib._repr_html_()
    assert "xr-wrap" in data._repr_html_()  # xarray's own rich display is untouched
    assert data.imagelib.version == samples.geo
    viewer = data.imagelib.view(base_url="/u/", basemap=None)
    assert isinstance(viewer, DeepZoomViewer) and viewer.version == samples.geo


# --- the ingest widget ----------------------------------------------------------------------------


def test_ingest_from_a_path(samples: Samples) -> None:
    widget = IngestWidget("view", "chess", path=str(DATA / "chessboard_GRAY_U16.tif"), lib=samples.lib)
    summary = widget.ingest()
    assert summary is not None and summary["version"] == samples.plain
    assert (widget.progress.value, widget.progress.bar_style) == (3, "success")
    assert samples.plain in widget.status.value and "valid" in widget.table.value
    assert not widget.ingest_button.disabled


def test_ingest_an_upload(samples: Samples) -> None:
    raw = (DATA / "byte.tif").read_bytes()
    widget = IngestWidget("view", "byte", lib=samples.lib)
    widget.upload.value = (
        {
            "name": "../../byte.tif",  # the browser's name is reduced to a bare file name
            "type": "image/tiff",
            "size": len(raw),
            "content": memoryview(raw),
            "last_modified": dt.datetime.now(dt.UTC),
        },
    )
    summary = widget.ingest()
    assert summary is not None and summary["shape"] == imagelib.validate(DATA / "byte.tif")["info"]["shape"]
    assert imagelib.open(summary["version"], lib=samples.lib).shape[-2:] == tuple(summary["shape"][-2:])


def test_ingest_reports_are_tables_and_codes(samples: Samples, tmp_path: Path) -> None:
    missing = IngestWidget("view", "x", path=str(tmp_path / "nope.tif"), lib=samples.lib)
    assert missing.ingest() is None
    assert "<code>FILE_NOT_FOUND</code>" in missing.table.value and "<table" in missing.table.value
    assert missing.progress.bar_style == "danger"
    empty = IngestWidget("view", "x", lib=samples.lib)
    assert empty.ingest() is None and "<b>USAGE</b>" in empty.status.value
    bad_name = IngestWidget("bad name!", "x", path=str(DATA / "byte.tif"), lib=samples.lib)
    assert bad_name.ingest() is None and "<b>DATASET_NAME_INVALID</b>" in bad_name.status.value


# --- against a real Jupyter server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def jupyter(samples: Samples, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    root = tmp_path_factory.mktemp("jupyter-viewer")
    env = {"IMAGELIB_HOME": str(samples.home), "IMAGELIB_STORE": None, "IMAGELIB_CATALOG": None}
    with JupyterServer(root, token=TOKEN, base_url=BASE, env=env) as server:
        yield server


def fetch(url: str) -> httpx.Response:
    return httpx.get(url, headers={"Authorization": f"token {TOKEN}"}, timeout=60)


def test_base_url_from_the_running_server(jupyter: JupyterServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter.root / "runtime"))
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert tile_base_url() == BASE


@pytest.mark.parametrize("chain", [None, CHAIN], ids=["plain", "chain"])
def test_viewer_urls_load_from_the_extension(
    samples: Samples, jupyter: JupyterServer, chain: list | None
) -> None:
    """Each tile URL the viewer hands to Leaflet answers 200 with exactly ``render_tile``'s bytes."""
    host = f"http://127.0.0.1:{jupyter.port}{BASE}"
    geo = DeepZoomViewer(samples.geo, chain, lib=samples.lib, base_url=host, basemap=None)
    z = geo.zoom_range[1]
    xmin, _, ymin, _ = renderer_for(samples.geo, lib=samples.lib).xyz_grid.tile_range(z)
    response = fetch(fill(geo.layer.url, z, xmin, ymin))
    assert response.status_code == 200, response.text
    assert response.content == render_tile(samples.geo, z, xmin, ymin, "png", chain, "xyz", lib=samples.lib)
    volume = DeepZoomViewer(samples.volume, chain, lib=samples.lib, base_url=host)
    volume.set_slice("z", 2)
    top = volume.zoom_range[1]
    response = fetch(fill(volume.layer.url, top, 0, 0))
    assert response.status_code == 200, response.text
    expected = render_tile(samples.volume, top, 0, 0, "png", chain, axis="z", index=2, lib=samples.lib)
    assert response.content == expected
    assert expected != render_tile(
        samples.volume, top, 0, 0, "png", chain, axis="z", index=6, lib=samples.lib
    )
    volume.set_slice("y", 9)  # an orthogonal slice: the extension serves the URL the layer now names
    top = volume.zoom_range[1]
    response = fetch(fill(volume.layer.url, top, 0, 0))
    assert response.status_code == 200, response.text
    assert response.content == render_tile(
        samples.volume, top, 0, 0, "png", chain, axis="y", index=9, lib=samples.lib
    )
    pixel = DeepZoomViewer(samples.micro, chain, lib=samples.lib, base_url=host)
    top = pixel.zoom_range[1]
    for level, col, row in ((top, 1, 0), (top - 1, 0, 0), (0, 0, 0)):
        response = fetch(fill(pixel.layer.url, level, col, row))
        assert response.status_code == 200, response.text
        assert response.content == render_tile(samples.micro, level, col, row, "png", chain, lib=samples.lib)


# --- JupyterLab in headless chromium ------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


def _notebook(plain: str, geo: str) -> dict:
    """One cell: a microscopy viewer linked to a builder, and a geo viewer."""
    cells = [
        "from imagelib.widgets import DeepZoomViewer, FilterChainBuilder\n"
        f"b = FilterChainBuilder({plain!r}, debounce_s=0)\n"
        f"v = DeepZoomViewer({plain!r}, b)\n"
        f"g = DeepZoomViewer({geo!r}, basemap=None)  # no internet for a basemap here\n"
        "display(v.widget, g.widget)",
    ]
    return {
        "cells": [
            {
                "cell_type": "code",
                "id": f"c{i}",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": src,
            }
            for i, src in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.mark.browser
def test_jupyterlab_shows_the_viewers_and_follows_the_builder(
    samples: Samples, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Real JupyterLab, real kernel, real widgets: tiles come through the extension (base URL learnt from
    the running server), none fails, the maps are not blank, and a builder edit loads the chain's tiles."""
    from tests.conftest import missing_service

    if not CHROMIUM.exists():
        missing_service("browser", f"{CHROMIUM} not installed")
    try:
        import jupyterlab  # noqa: F401
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing_service("browser", f"{exc.name} is not installed")
    import contextlib
    import io

    from PIL import Image

    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "view.ipynb").write_text(json.dumps(_notebook(samples.micro, samples.geo)))
    env = {"IMAGELIB_HOME": str(samples.home), "IMAGELIB_STORE": None, "IMAGELIB_CATALOG": None}
    lab = JupyterServer(
        root, token=TOKEN, base_url=BASE, env=env, app="jupyterlab",
        extra_args=("--LabApp.expose_app_in_browser=True",),
    )  # fmt: skip
    responses: list[tuple[int, str]] = []
    with lab, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            page.on(
                "response",
                lambda r: responses.append((r.status, r.url)) if "/imagelib/tiles/" in r.url else None,
            )
            page.goto(f"{lab.url}lab/tree/view.ipynb?token={TOKEN}")
            page.wait_for_selector(".jp-NotebookPanel", timeout=90_000)
            with contextlib.suppress(PlaywrightTimeout):  # Lab may ask which kernel: take the proposed one
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10_000)
            page.wait_for_function(
                "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                timeout=90_000,
            )
            # not awaited: the command's promise is not one to wait on; the tiles are
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(
                "document.querySelectorAll('.leaflet-container').length == 2 && "
                "[...document.querySelectorAll('.leaflet-container')].every("
                "  c => c.querySelector('img.leaflet-tile-loaded'))",
                timeout=90_000,
            )
            page.wait_for_load_state("networkidle")
            for container in page.locator(".leaflet-container").all():
                pixels = np.asarray(Image.open(io.BytesIO(container.screenshot())).convert("L"), float)
                assert pixels.std() > 10, "a map canvas is blank"
            assert {v for _, url in responses for v in (samples.micro, samples.geo) if v in url} == {
                samples.micro,
                samples.geo,
            }
            assert all(url.startswith(f"{lab.url}imagelib/tiles/") for _, url in responses)
            assert not any("chain=" in url for _, url in responses)
            # edit the linked builder from the notebook: the tile layer re-targets at the chain's tiles
            page.evaluate(
                "() => { window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                ".requestExecute({code: 'b.add(\"gaussian\")'}); }"
            )
            page.wait_for_function(
                "[...document.querySelectorAll('img.leaflet-tile-loaded')]"
                ".some(i => i.src.includes('chain='))",
                timeout=90_000,
            )
            page.wait_for_load_state("networkidle")
        except Exception:
            page.screenshot(path=str(root / "page.png"))  # for the failure's post-mortem
            print("screenshot:", root / "page.png", "tile responses:", responses[:6])
            raise
        finally:
            browser.close()
    chained = [(s, u) for s, u in responses if "chain=" in u]
    assert chained and all(samples.micro in u for _, u in chained)
    expected = canonical([{"op": "gaussian"}])
    assert all(chain_of(u) == json.loads(expected) for _, u in chained)
    assert all(status == 200 for status, _ in responses), responses
