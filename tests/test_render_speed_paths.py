"""The tile renderer's fast paths give the same bytes as the general computations they replace.

* ``Gamma`` on float data runs in place on one temporary (all bands at once when no band is selected):
  compared bit for bit with the original expression ``(maximum(x, 0) ** gamma * gain).astype(x.dtype)``.
* ``to_uint8`` stretches band by band in place (fmax/fmin instead of clip + nan_to_num): compared with
  the original whole-stack implementation, copied here as the reference.
* ``apply_chain_cropped`` runs the chain's trailing point ops on the cropped tile only: compared with
  ``apply_chain(...)[crop]`` and, through the renderer, with the chain on the whole image.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from imagelib.errors import ImagelibError
from imagelib.filters import apply_chain
from imagelib.filters.chain import apply_chain_cropped
from imagelib.filters.ops_band import Gamma
from imagelib.tiling.grid import DziGrid
from imagelib.tiling.render import Renderer
from imagelib.tiling.scale import Scaling, Style, invalid, resolve, to_uint8
from imagelib.tiling.source import MemoryPlane

RNG = np.random.default_rng(7)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (NaN payloads and signed zeros included)."""
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == b.tobytes()


def sample(dtype: str, bands: int, shape: tuple[int, int] = (37, 41), special: bool = True) -> np.ndarray:
    """Random ``(bands, h, w)`` data; floats get NaN, ±inf, ±0, negatives and tiny values sprinkled in."""
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return RNG.integers(info.min, int(info.max) + 1, (bands, *shape), dtype=dtype)
    data = RNG.normal(0.5, 0.6, (bands, *shape)).astype(dtype)
    if special:
        flat = data.reshape(-1)
        values = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1e-30, 1e30, 0.5, 1.0]
        with np.errstate(over="ignore"):  # 1e30 is inf in float16
            flat[RNG.choice(flat.size, len(values) * 3, replace=False)] = values * 3
    return data


# --- gamma -------------------------------------------------------------------------------------------


def gamma_reference(op: Gamma, array: np.ndarray) -> np.ndarray:
    """The op as it was: the expression per selected band through ``map_bands``."""
    return op.map_bands(array, np, lambda x, _: (np.maximum(x, 0) ** op.gamma * op.gain).astype(x.dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "uint8", "uint16"])
@pytest.mark.parametrize("bands", [1, 3])
@pytest.mark.parametrize(
    "gamma,gain", [(0.8, 1.0), (0.5, 1.0), (2.0, 1.0), (1.0, 1.0), (2.2, 0.7), (0.45, 3.0)]
)
@pytest.mark.parametrize("selected", [None, [1]])
def test_gamma_fast_path_bit_identical(
    dtype: str, bands: int, gamma: float, gain: float, selected: list[int] | None
):
    data = sample(dtype, bands)
    op = Gamma(gamma=gamma, gain=gain, bands=selected)
    with np.errstate(all="ignore"):
        expected, got = gamma_reference(op, data), op(data, np)
    assert same_bits(got, expected)


def test_gamma_fast_path_on_strided_views():
    data = sample("float32", 3, (60, 70))
    view = data[:, 5:-7, 3:-4]  # a cropped tile: not contiguous
    for op in (Gamma(gamma=0.8), Gamma(gamma=0.8, bands=[2, 3]), Gamma(gamma=1.7, gain=0.5)):
        with np.errstate(all="ignore"):
            assert same_bits(op(view, np), gamma_reference(op, view))
    assert np.shares_memory(view, data) and not view.flags.c_contiguous


def test_gamma_does_not_modify_its_input():
    data = sample("float32", 3)
    before = data.copy()
    with np.errstate(all="ignore"):
        Gamma(gamma=0.8)(data, np)
        Gamma(gamma=0.8, bands=[1])(data, np)
    assert same_bits(data, before)


# --- to_uint8 ----------------------------------------------------------------------------------------


def to_uint8_reference(data: np.ndarray, scaling: Scaling, missing: np.ndarray | None = None) -> np.ndarray:
    """``to_uint8`` as it was before the band-by-band fast path."""
    if scaling.identity and data.dtype == np.uint8:
        img = data
    else:
        lo = scaling.lo.astype(np.float32)[:, None, None]
        gain = (255.0 / (scaling.hi - scaling.lo)).astype(np.float32)[:, None, None]
        with np.errstate(over="ignore", invalid="ignore"):
            work = (data.astype(np.float32) - lo) * gain + np.float32(0.5)
            np.clip(work, 0, 255, out=work)
            img = np.nan_to_num(work, nan=0.0).astype(np.uint8)
    img = scaling.table[img[0]] if scaling.table is not None else np.stack(list(img), axis=-1)
    if not scaling.alpha:
        return img
    mask = invalid(data, scaling.nodata) if missing is None else invalid(data, scaling.nodata) | missing
    img = np.where(mask[..., None], np.uint8(0), img)
    return np.concatenate([img, np.where(mask, 0, 255).astype(np.uint8)[..., None]], axis=-1)


STATS = {"p2": [10.0, -5.0, 0.25], "p98": [200.0, 3000.0, 0.75]}
STYLES = [
    Style(),
    Style(rescale=(0.1, 0.9)),
    Style(rescale=((0, 1), (-2, 2), (0.3, 0.31))),
    Style(rescale=(5, 5)),  # flat
    Style(bands=(1,), colormap="viridis"),
    Style(bands=(2,)),
    Style(bands=(3, 1, 2)),
]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
@pytest.mark.parametrize("style", STYLES, ids=lambda s: repr(s.key()))
@pytest.mark.parametrize("nodata", [None, 0, "nan", 200])
def test_to_uint8_matches_reference(dtype: str, style: Style, nodata: object):
    data = sample(dtype, 3)
    if np.dtype(dtype).kind == "f":
        data[:, 3:6, 4:9] *= 1e6  # far outside the range: saturates
        data[1, 10, 10] = 1e300 if dtype == "float64" else data[1, 10, 10]  # overflows float32
    attrs = {"stats": STATS, "nodata": nodata}
    try:
        scaling = resolve(attrs, np.dtype(dtype), 3, style)
    except ImagelibError:
        pytest.skip("style not valid for this data")
    selected = data[[b - 1 for b in scaling.bands]]
    missing = RNG.random(selected.shape[1:]) < 0.1
    for kwargs in ({}, {"missing": missing}):
        with np.errstate(all="ignore"):
            expected = to_uint8_reference(selected, scaling, **kwargs)
        got = to_uint8(selected, scaling, **kwargs)
        assert same_bits(got, expected)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_to_uint8_single_band_and_broadcast_ranges(dtype: str):
    data = sample(dtype, 1)
    one = resolve({"stats": {"p2": [0.1], "p98": [0.9]}}, np.dtype(dtype), 1, Style())
    assert same_bits(to_uint8(data, one), to_uint8_reference(data, one))
    # a band count changed by a chain: one range for three bands, or three ranges over one band
    three = Scaling((1, 2, 3), np.zeros(3), np.array([1.0, 2.0, 4.0]), None, False, False, None)
    data3 = sample(dtype, 3)
    assert same_bits(to_uint8(data3, three), to_uint8_reference(data3, three))
    assert same_bits(to_uint8(data, three), to_uint8_reference(data, three))


def test_to_uint8_float_edge_values():
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 254.49, 254.5, 255.0, 255.5, 1e38, -1e38, 0.4999])
    data = np.stack([values, values[::-1], values * 0.5]).astype(np.float32)[:, None, :]
    scaling = resolve({}, np.dtype(np.float32), 3, Style(rescale=(0, 255)))
    assert same_bits(to_uint8(data, scaling), to_uint8_reference(data, scaling))


# --- trailing point ops on the cropped tile ----------------------------------------------------------

CHAINS = {
    "service_s1": [
        {"op": "band_scale", "in_range": [0, 255], "out_range": [0, 1]},
        {"op": "gaussian", "sigma": 1.0},
        {"op": "gamma", "gamma": 0.8},
    ],
    "service_s1.5_selected": [
        {"op": "band_scale", "in_range": [0, 255], "out_range": [0, 1]},
        {"op": "gaussian", "sigma": 1.5},
        {"op": "clip", "min": 0.1, "bands": [1]},
        {"op": "gamma", "gamma": 2.2, "gain": 0.9, "bands": [1]},
    ],
    "points_only": [{"op": "gamma", "gamma": 0.5}, {"op": "clip", "max": 0.7}],
    "no_tail": [{"op": "gamma", "gamma": 0.8}, {"op": "median", "size": 3}],
    "band_math_tail": [{"op": "gaussian", "sigma": 1.0}, {"op": "band_math", "expr": "b1"}],
    "band_math_head": [
        {"op": "band_math", "expr": "b1 * 0.5"},
        {"op": "gaussian", "sigma": 1.0},
        {"op": "gamma", "gamma": 1.3},
    ],
    "percentile_tail": [{"op": "gaussian", "sigma": 1.0}, {"op": "percentile_stretch"}],
}


def one_band_chain(chain: list[dict]) -> bool:
    return all("bands" not in op or op["bands"] == [1] for op in chain)


@pytest.mark.parametrize("name", sorted(CHAINS))
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("bands", [1, 3])
def test_apply_chain_cropped_matches_crop_of_apply_chain(name: str, dtype: str, bands: int):
    chain = CHAINS[name]
    if bands == 1 and not one_band_chain(chain):
        pytest.skip("chain selects bands the data lacks")
    data = sample(dtype, bands, (48, 52))
    if dtype == "float32":
        data[:, 20, 20] = np.nan
    for window in [(slice(5, 40), slice(6, 47)), (slice(0, 48), slice(0, 52)), (slice(0, 9), slice(30, 52))]:
        if bands == 3:
            with np.errstate(all="ignore"):
                expected = apply_chain(data, chain, dims=("band", "y", "x"))[(slice(None), *window)]
                got = apply_chain_cropped(data, chain, (slice(None), *window), dims=("band", "y", "x"))
        else:
            with np.errstate(all="ignore"):
                expected = apply_chain(data[0], chain, dims=("y", "x"))[window]
                got = apply_chain_cropped(data[0], chain, window, dims=("y", "x"))
        assert same_bits(np.asarray(got), np.asarray(expected))


def test_apply_chain_cropped_reports_the_same_errors():
    data = sample("float32", 2)
    chain = [{"op": "gaussian", "sigma": 1.0}, {"op": "gamma", "gamma": 0.8, "bands": [3]}]
    with pytest.raises(ImagelibError) as full:
        apply_chain(data, chain, dims=("band", "y", "x"))
    with pytest.raises(ImagelibError) as cropped:
        apply_chain_cropped(data, chain, (slice(None), slice(1, 5), slice(1, 5)), dims=("band", "y", "x"))
    assert (cropped.value.code, cropped.value.field) == (full.value.code, full.value.field)


# --- the renderer end to end: tiles == the chain on the whole image, cut and scaled --------------------


def service_like_image(size: int, dtype: str) -> np.ndarray:
    """RGB ramp + noise like benchmarks/ingest (uint8), or its float version with NaN holes."""
    ramp = (np.arange(size, dtype=np.uint32) % 251).astype(np.uint8)
    data = np.broadcast_to(ramp, (3, size, size)).copy()
    data += RNG.integers(0, 32, data.shape, dtype=np.uint8)
    if dtype == "uint8":
        return data
    out = data.astype(dtype) / 255
    out[:, 100:104, 7:300] = np.nan
    return out


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
@pytest.mark.parametrize("name", ["service_s1", "service_s1.5_selected", "points_only"])
def test_renderer_tiles_equal_whole_image_chain(dtype: str, name: str):
    chain = CHAINS[name]
    size = 600
    image = service_like_image(size, dtype)
    attrs = {"dims": ["band", "y", "x"], "stats": {"p2": [0.0] * 3, "p98": [1.0] * 3}}
    renderer = Renderer(MemoryPlane(image, attrs), chain)
    with np.errstate(all="ignore"):
        whole = apply_chain(image, chain, dims=("band", "y", "x"))
    grid = DziGrid(size, size, 254, 1)
    level = grid.levels - 1
    cols, rows = grid.tile_counts(level)
    for col in range(cols):
        for row in range(rows):
            w = grid.window(level, col, row)
            expected = to_uint8_reference(whole[:, w.y0 : w.y1, w.x0 : w.x1], renderer.scaling)
            assert same_bits(to_uint8(renderer.pixels(0, w), renderer.scaling), expected), (col, row)


def test_service_chain_against_scipy():
    """The benchmark's chain on a tile, step by step with scipy/numpy (independent of the op classes)."""
    image = service_like_image(300, "uint8")
    renderer = Renderer(MemoryPlane(image, {"dims": ["band", "y", "x"]}), CHAINS["service_s1"])
    w = DziGrid(300, 300, 254, 1).window(DziGrid(300, 300, 254, 1).levels - 1, 0, 0)
    scaled = ((image.astype(np.float64) - 0) * (1 / 255) + 0).clip(0, 1).astype(np.float32)
    blurred = np.stack([ndimage.gaussian_filter(b, 1.0, mode="reflect", truncate=4.0) for b in scaled])
    gamma = np.maximum(blurred, 0) ** 0.8 * 1.0
    expected = gamma[:, w.y0 : w.y1, w.x0 : w.x1]
    # float32 rounding of the OpenCV Gaussian vs scipy's float64 line buffer (≤ 2e-6 before gamma's slope)
    np.testing.assert_allclose(renderer.pixels(0, w), expected, rtol=0, atol=4e-6)


def test_flat_rescale_is_a_unit_range_not_an_infinite_gain():
    """``rescale=(5, 5)`` behaves as a constant band's range does (5 ± 0.5): below black, 5 mid-grey,
    above white, with no division by zero on the way."""
    data = np.arange(11, dtype=np.uint8)[None, None, :]
    scaling = resolve({}, np.dtype("uint8"), 1, Style(rescale=(5, 5)))
    with np.errstate(divide="raise", invalid="raise"):
        got = to_uint8(data, scaling)[0, :, 0]
    assert got.tolist() == [0] * 5 + [128] + [255] * 5
