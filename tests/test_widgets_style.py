"""DeepZoomViewer's band / stretch / colormap controls and approximation notes: the widget models without a
browser (the tile URL templates they produce), and those URLs fetched from a real ``jupyter server``
running the imagelib extension (same bytes as ``render_tile(..., style=...)``, the notes header)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from imagelib_jupyter.launch import JupyterServer

import imagelib
from imagelib.context import Library
from imagelib.tiling import render_tile, renderer_for
from imagelib.tiling.http import NOTES_HEADER, parse_tile_query
from imagelib.tiling.scale import Style
from imagelib.widgets import DeepZoomViewer
from imagelib.widgets.urls import fill
from tests.conftest import DATA

TOKEN = "imagelib-style-token-7c1e"
BASE = "/style-user/"
MEDIAN = [{"op": "median", "size": 3}]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("style") / "home"


@pytest.fixture(scope="module")
def lib(home: Path) -> Library:
    return imagelib.connect(home)


@pytest.fixture(scope="module")
def rgb(lib: Library) -> str:
    """world.rgb.tif: 3 bands, uint8, georeferenced."""
    return imagelib.ingest(DATA / "world.rgb.tif", "style", "world", lib=lib)["version"]


@pytest.fixture(scope="module")
def gray(lib: Library) -> str:
    """A one-band uint16 image without a CRS (pixel space)."""
    return imagelib.ingest(DATA / "chessboard_GRAY_U16.tif", "style", "chess", lib=lib)["version"]


def query_of(url: str) -> dict[str, str]:
    """The decoded query of a tile URL."""
    return dict(parse_qsl(urlsplit(url).query))


def style_of(url: str) -> Style:
    """The style a tile URL carries, read back by the servers' parser."""
    return parse_tile_query(query_of(url).get, 8192).style


def test_controls_re_template_the_tile_layer(lib: Library, rgb: str) -> None:
    viewer = DeepZoomViewer(rgb, lib=lib, base_url="/u/", basemap=None)
    assert viewer.error.value == "" and viewer.layer.url == f"/u/imagelib/tiles/{rgb}/{{z}}/{{x}}/{{y}}.png"
    viewer.bands.value = "3,2,1"
    assert viewer.error.value == "" and query_of(viewer.layer.url) == {"bands": "3,2,1"}
    viewer.stretch.value = "10,200"
    assert style_of(viewer.layer.url) == Style((3, 2, 1), (10.0, 200.0)) == viewer.style
    viewer.bands.value, viewer.colormap.value = "2", "viridis"
    assert query_of(viewer.layer.url) == {"bands": "2", "rescale": "10,200", "colormap": "viridis"}
    assert "{" not in urlsplit(viewer.layer.url).query  # Leaflet sees only {z} {x} {y}
    viewer.opacity.value = 0.4
    assert viewer.layer.opacity == 0.4


def test_bad_style_values_are_shown_in_place(lib: Library, rgb: str, gray: str) -> None:
    viewer = DeepZoomViewer(rgb, lib=lib, base_url="/u/", basemap=None)
    before = viewer.layer.url
    for control, value, code in [
        (viewer.bands, "4", "BAND_INDEX_INVALID"),  # world.rgb.tif has 3 bands
        (viewer.bands, "1,2", "BAND_INDEX_INVALID"),
        (viewer.bands, "x", "USAGE"),
        (viewer.stretch, "200,10", "USAGE"),
    ]:
        control.value = value
        assert f"<b>{code}</b>" in viewer.error.value, (value, viewer.error.value)
        assert "Traceback" not in viewer.error.value and viewer.layer.url == before
        control.value = ""
        assert viewer.error.value == "" and viewer.layer.url == before
    viewer.bands.value = "1,2,3"
    viewer.colormap.value = "magma"  # a colormap needs one band
    assert "<b>USAGE</b>" in viewer.error.value and "colormap" not in viewer.layer.url
    # a band the chain's output lacks: band_math leaves one band
    one = DeepZoomViewer(gray, lib=lib, style=Style(bands=(2,)))
    assert "<b>BAND_INDEX_INVALID</b>" in one.error.value and one.map is None
    chained = DeepZoomViewer(rgb, [{"op": "band_math", "expr": "b1"}], lib=lib, basemap=None)
    chained.bands.value = "3"
    assert "<b>BAND_INDEX_INVALID</b>" in chained.error.value


def test_the_widget_shows_what_a_zoom_approximates(lib: Library, gray: str) -> None:
    viewer = DeepZoomViewer(gray, MEDIAN, lib=lib, base_url="/u/")
    top = viewer.zoom_range[1]
    viewer.map.zoom = top
    assert viewer.notes.value == ""  # full resolution: the chain as given
    viewer.map.zoom = top - 2
    assert "median: size 3" in viewer.notes.value and "skipped" in viewer.notes.value
    viewer.set_chain([{"op": "gaussian", "sigma": 2}])  # rescales exactly: nothing to say
    assert viewer.notes.value == ""


@pytest.fixture(scope="module")
def jupyter(
    home: Path, rgb: str, gray: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    root = tmp_path_factory.mktemp("jupyter-style")
    env = {"IMAGELIB_HOME": str(home), "IMAGELIB_STORE": None, "IMAGELIB_CATALOG": None}
    with JupyterServer(root, token=TOKEN, base_url=BASE, env=env) as server:
        yield server


def fetch(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers={"Authorization": f"token {TOKEN}", **headers}, timeout=60)


def test_the_extension_serves_the_styled_urls(
    lib: Library, rgb: str, gray: str, jupyter: JupyterServer
) -> None:
    host = f"http://127.0.0.1:{jupyter.port}{BASE}"
    style = Style((3, 1, 2), (20.0, 180.0))
    geo = DeepZoomViewer(rgb, lib=lib, base_url=host, basemap=None, style=style)
    z = geo.zoom_range[1]
    x, _, y, _ = renderer_for(rgb, lib=lib).xyz_grid.tile_range(z)
    styled = fetch(fill(geo.layer.url, z, x, y))
    assert styled.status_code == 200, styled.text
    assert styled.content == render_tile(rgb, z, x, y, "png", scheme="xyz", style=style, lib=lib)
    plain = fetch(fill(geo.layer.url.split("?")[0], z, x, y))
    assert plain.content != styled.content and plain.headers["ETag"] != styled.headers["ETag"]
    assert fetch(fill(geo.layer.url, z, x, y), **{"If-None-Match": styled.headers["ETag"]}).status_code == 304
    # a colormapped single band, through a chain that is only approximated at a coarse level
    pixel = DeepZoomViewer(gray, MEDIAN, lib=lib, base_url=host, style=Style(colormap="viridis"))
    top = pixel.zoom_range[1]
    for level, note in ((top, None), (top - 3, "median: size 3")):
        answer = fetch(fill(pixel.layer.url, level, 0, 0))
        assert answer.status_code == 200, answer.text
        expected = render_tile(gray, level, 0, 0, "png", MEDIAN, style=Style(colormap="viridis"), lib=lib)
        assert answer.content == expected
        assert answer.headers.get(NOTES_HEADER, "").startswith(note or "") and (note is None) == (
            NOTES_HEADER not in answer.headers
        )
    # malformed values: coded 400s naming the field
    tile = fill(pixel.layer.url.split("?")[0], top, 0, 0)
    for query, code in [("bands=0", "BAND_INDEX_INVALID"), ("bands=2", "BAND_INDEX_INVALID"),
                        ("rescale=1", "USAGE"), ("colormap=nope", "USAGE")]:  # fmt: skip
        answer = fetch(f"{tile}?{query}")
        assert answer.status_code == 400, (query, answer.text)
        assert answer.json()["error"]["code"] == code, (query, answer.text)
