"""The preview is what you get: an on-the-fly DZI tile of a version seen through a chain matches the same
tile of the version ``imagelib.apply`` derives with that chain — spatial parameters rescaled per level,
and the same display stretch (the chain output's p2/p98) — and the tile servers say what is only
approximated at a zoom (``X-Imagelib-Approximate``).

Tolerances (mean |difference| in grey levels over the RGB of every tile of the level): derived pyramids
average 2×2 blocks of the filtered float image, while the live tile filters the averaged parent (whose
levels are rounded to uint8 at each halving), so coarse levels differ by rounding and by the op not
commuting exactly with 2×2 averaging. Median is rank-based (no exact rescaling: nearest odd window,
skipped under 1.5 level pixels); fft_bandpass is a global op that tiles run on tile + overlap rather
than the whole plane (DESIGN.md), which costs a few grey levels at every level.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import imagelib
from imagelib.api import ApiSettings, create_app
from imagelib.tiling import render_tile, renderer_for
from imagelib.tiling.http import NOTES_HEADER, query_string
from tests.test_tiling import smooth_rgb, write_tiff

#: name → (chain, tolerance at full resolution, at 1/2, at 1/8)
CASES: dict[str, tuple[list[dict[str, Any]], float, float, float]] = {
    "gaussian": ([{"op": "gaussian", "sigma": 2}], 0.5, 1.0, 2.0),
    "unsharp": ([{"op": "unsharp", "sigma": 2, "amount": 1.0}], 0.5, 1.0, 2.0),
    "band_scale+gaussian": (
        [{"op": "band_scale", "in_range": [0, 255], "out_range": [0, 1]}, {"op": "gaussian", "sigma": 3}],
        0.5,
        1.0,
        2.0,
    ),
    "fft_bandpass": ([{"op": "fft_bandpass", "low": 0.01, "high": 0.1}], 4.0, 4.0, 3.0),
    "median": ([{"op": "median", "size": 5}], 0.5, 3.0, 2.0),
}
SHRINKS = (0, 1, 3)  # full resolution, 1/2, 1/8


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A 777×1000 RGB uint8 parent and its version derived with each case's chain."""
    root = tmp_path_factory.mktemp("preview")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGELIB_HOME", str(root / "home"))
        mp.delenv("IMAGELIB_STORE", raising=False)
        mp.delenv("IMAGELIB_CATALOG", raising=False)
        path = write_tiff(root / "rgb.tif", smooth_rgb(777, 1000))
        parent = imagelib.ingest(path, "preview", "rgb")["version"]
        derived = {name: imagelib.apply(parent, chain) for name, (chain, *_) in CASES.items()}
        yield parent, derived


def rgb(data: bytes) -> np.ndarray:
    """The colour channels of a PNG tile (the derived float version's tiles also carry alpha)."""
    return np.asarray(Image.open(io.BytesIO(data)))[..., :3].astype(np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_live_tiles_match_the_derived_versions_tiles(versions: Any, name: str) -> None:
    parent, derived = versions
    chain, *tolerances = CASES[name]
    grid = renderer_for(parent).dzi_grid()
    measured = []
    for shrink, tolerance in zip(SHRINKS, tolerances, strict=True):
        level = grid.levels - 1 - shrink
        cols, rows = grid.tile_counts(level)
        total, count = 0.0, 0
        for col in range(cols):
            for row in range(rows):
                live = rgb(render_tile(parent, level, col, row, "png", chain=chain, cache=None))
                baked = rgb(render_tile(derived[name], level, col, row, "png", cache=None))
                assert live.shape == baked.shape
                total, count = total + np.abs(live - baked).sum(), count + live.size
        measured.append((f"1/{2**shrink}", round(float(total / count), 3), tolerance))
    print(f"{name}: mean |live - derived| per level (measured, tolerance): {measured}")
    assert all(value <= tolerance for _, value, tolerance in measured), measured


def test_full_resolution_chain_pixels_are_unchanged(versions: Any) -> None:
    """Factor 1 is no rescaling: the full-resolution level runs the chain exactly as given."""
    parent, _ = versions
    chain = CASES["gaussian"][0]
    renderer = renderer_for(parent, chain)
    assert renderer.level_chain(0) == renderer.chain and renderer.notes(0) == []
    assert renderer.level_chain(1) == [{"op": "gaussian", "sigma": 1.0, "truncate": 4.0}]
    assert renderer.level_halo(0) == (8, 8) and renderer.level_halo(3) == (1, 1)  # int(4 * sigma + 0.5)


def test_the_api_names_the_approximated_op(versions: Any) -> None:
    parent, _ = versions
    app = create_app(imagelib.connect(), settings=ApiSettings(access_log=False))
    client = TestClient(app)
    top = renderer_for(parent).dzi_grid().levels - 1
    chain = [{"op": "median", "size": 3}, {"op": "gaussian", "sigma": 2}]
    coarse = client.get(f"/v1/tiles/{parent}_files/{top - 3}/0_0.png" + query_string(chain))
    assert coarse.status_code == 200, coarse.text
    note = coarse.headers[NOTES_HEADER]
    assert note.startswith("median: size 3") and "skipped" in note and "gaussian" not in note
    full = client.get(f"/v1/tiles/{parent}_files/{top}/0_0.png" + query_string(chain))
    assert full.status_code == 200 and NOTES_HEADER not in full.headers
    plain = client.get(f"/v1/tiles/{parent}_files/{top - 3}/0_0.png")
    assert plain.status_code == 200 and NOTES_HEADER not in plain.headers


def test_stretch_is_the_derived_versions(versions: Any) -> None:
    """The live stretch is the chain output's p2/p98 exactly as the derived version stored them."""
    parent, derived = versions
    for name, (chain, *_) in CASES.items():
        stored = imagelib.open(derived[name]).attrs["stats"]
        live = renderer_for(parent, chain).scaling
        np.testing.assert_allclose(live.lo, stored["p2"], rtol=1e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(live.hi, stored["p98"], rtol=1e-6, atol=1e-6, err_msg=name)


def test_an_explicit_range_overrides_the_chain_stretch(versions: Any) -> None:
    from imagelib.tiling.scale import Style

    parent, _ = versions
    chain = CASES["gaussian"][0]
    scaling = renderer_for(parent, chain, style=Style(rescale=(10, 20))).scaling
    assert list(scaling.lo) == [10.0] * 3 and list(scaling.hi) == [20.0] * 3


def test_a_style_change_reuses_the_chain_statistics(versions: Any) -> None:
    """Another band/colormap is another renderer, not another pass of the chain over a whole level."""
    from imagelib.tiling.scale import Style

    parent, _ = versions
    chain = [{"op": "gaussian", "sigma": 2.5}]
    first = renderer_for(parent, chain)
    other = renderer_for(parent, chain, style=Style(bands=(2,), colormap="viridis"))
    assert other is not first and other.chain_stats is first.chain_stats
    assert other.scaling.lo[0] == first.scaling.lo[1]  # band 2's p2, whichever renderer computed it
