"""Behaviours that a reviewer broke on purpose while the whole suite stayed green (issue 8, "What the
tests do not notice"). Each test here fails under one of those mutations and checks the behaviour
against an independent reference (numpy, scipy, Pillow, the filesystem), through public entry points.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import scipy.ndimage
from PIL import Image
from rasterio.transform import from_origin

import imagelib
from imagelib.errors import ImagelibError, ValidationFailed
from imagelib.multiscale import downsample2
from imagelib.storage import LocalStore, Store
from imagelib.tiling.cache import TileCache
from imagelib.tiling.encode import encode
from imagelib.tiling.export import tile_version
from imagelib.tiling.render import render_tile
from imagelib.tiling.scale import Style

UTM = {"crs": "EPSG:32618", "transform": from_origin(300000, 2800000, 30, 30)}


def write_tiff(path: Path, data: np.ndarray, **profile: Any) -> Path:
    """A GeoTIFF of ``(bands, y, x)`` data, written by rasterio (``nodata`` etc. in ``profile``)."""
    count, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype,
        **{**UTM, **profile},
    ) as ds:
        ds.write(data)
    return path


def decode(data: bytes) -> np.ndarray:
    """Tile pixels ``(h, w, c)`` decoded by Pillow."""
    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr if arr.ndim == 3 else arr[..., None]


def full_resolution_level(height: int, width: int) -> int:
    """The DZI level number of full resolution (``vips dzsave``: levels down to 1×1)."""
    return math.ceil(math.log2(max(height, width)))


# -- 1. band-count rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "bands", "valid"),
    [
        ("min_bands: 3", 1, False),
        ("min_bands: 3", 3, True),
        ("min_bands: 2", 1, False),
        ("max_bands: 2", 3, False),
        ("max_bands: 3", 3, True),
        ("max_bands: 1", 1, True),
        ("{min_bands: 2, max_bands: 2}", 3, False),
        ("{min_bands: 2, max_bands: 2}", 1, False),
    ],
)
def test_band_count_rules_are_enforced(tmp_path: Path, rule: str, bands: int, valid: bool) -> None:
    """``min_bands``/``max_bands`` in a rule file refuse a file outside the range with BAND_COUNT_NOT_ALLOWED
    (and only that error), and accept one inside it."""
    path = write_tiff(tmp_path / "bands.tif", np.zeros((bands, 8, 8), np.uint8))
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule + "\n")
    report = imagelib.validate(path, rules=rules)
    assert report["valid"] is valid, report["errors"]
    codes = [e["code"] for e in report["errors"]]
    assert codes == ([] if valid else ["BAND_COUNT_NOT_ALLOWED"])
    if not valid:
        assert report["errors"][0]["found"] == bands


def test_ingest_refuses_a_band_count_outside_the_rules(home: Path, tmp_path: Path) -> None:
    """Ingest applies the same rule and publishes nothing."""
    path = write_tiff(tmp_path / "one.tif", np.zeros((1, 8, 8), np.uint8))
    rules = tmp_path / "rules.yaml"
    rules.write_text("min_bands: 3\n")
    with pytest.raises(ValidationFailed) as info:
        imagelib.ingest(path, "mut", "bands", rules=rules)
    assert [e["code"] for e in info.value.report["errors"]] == ["BAND_COUNT_NOT_ALLOWED"]
    assert imagelib.versions("mut", "bands") == []


# -- 2. stretch percentiles -------------------------------------------------------------------------


def test_stretch_uses_p2_p98_of_the_stats_level(home: Path, tmp_path: Path) -> None:
    """The catalog's ``p2``/``p98`` are numpy's 2nd/98th percentiles of the valid pixels of the stored level
    the stats name (``stats_level``), per band; a rendered tile is stretched linearly between them."""
    rng = np.random.default_rng(7)
    height, width, nodata = 300, 4200, 0  # wide: the stats come from a reduced level
    data = np.stack([rng.integers(1, 20000 * (b + 1), (height, width)) for b in range(3)]).astype(np.uint16)
    data[:, :, :96] = nodata  # a nodata strip must not count
    data[:, 100:140, 300:450] = nodata  # inside the tile checked below
    path = write_tiff(tmp_path / "wide.tif", data, nodata=nodata)
    version = imagelib.ingest(path, "mut", "stretch")["version"]
    (row,) = imagelib.versions("mut", "stretch")
    stats = row["stats"]
    level = stats["stats_level"]
    stored = imagelib.open(version, level=level).values.astype(np.float64)
    assert stored.shape[0] == 3 and max(stored.shape[-2:]) < width  # a real reduced level
    p2, p98 = [], []
    for plane in stored:
        valid = plane[plane != nodata]
        assert valid.size > plane.size // 2
        lo, hi = np.percentile(valid, [2, 98])
        p2.append(lo)
        p98.append(hi)
    np.testing.assert_allclose(stats["p2"], p2, rtol=1e-9)
    np.testing.assert_allclose(stats["p98"], p98, rtol=1e-9)

    # tile (col 1, row 0) at full resolution: rows 0..254, columns 253..508 (1 px overlap)
    tile = decode(render_tile(version, full_resolution_level(height, width), 1, 0, "png", cache=None))
    assert tile.shape == (255, 256, 4)  # RGB + alpha (nodata)
    source = data[:, :255, 253 : 253 + 256].astype(np.float64)
    lo, hi = np.array(p2)[:, None, None], np.array(p98)[:, None, None]
    expected = np.clip(np.floor((source - lo) * 255 / (hi - lo) + 0.5), 0, 255).transpose(1, 2, 0)
    masked = (source == nodata).all(axis=0)
    np.testing.assert_array_equal(tile[..., 3] == 0, masked)
    assert np.abs(tile[..., :3][~masked].astype(int) - expected[~masked]).max() <= 1  # float32 at .5


# -- 3. tile cache key includes the style --------------------------------------------------------------


def test_tile_cache_keeps_styles_apart(home: Path, tmp_path: Path) -> None:
    """With one shared tile cache, a colormap or range request after a plain one (and vice versa) gets its
    own rendering: equal to the uncached one, coloured where it should be, grey where it should be."""
    height, width = 200, 240
    y, x = np.mgrid[0:height, 0:width]
    data = (100 * x + 7 * y).astype(np.uint16)[None]
    version = imagelib.ingest(write_tiff(tmp_path / "grey.tif", data), "mut", "cache")["version"]
    level = full_resolution_level(height, width)
    styles = [Style(), Style(colormap="viridis"), Style(rescale=(0, 1000)), Style(colormap="magma")]
    for order in (styles, styles[::-1]):
        cache = TileCache()
        for style in order:
            cached = render_tile(version, level, 0, 0, "png", style=style, cache=cache)
            assert cached == render_tile(version, level, 0, 0, "png", style=style, cache=None), style
    grey = decode(render_tile(version, level, 0, 0, "png", cache=TileCache()))
    viridis = decode(render_tile(version, level, 0, 0, "png", style=Style(colormap="viridis"), cache=cache))
    assert grey.shape[2] == 1 and viridis.shape[2] == 3
    # viridis runs from dark purple to yellow (matplotlib's end points), never grey in between
    darkest = np.unravel_index(grey[..., 0].argmin(), grey.shape[:2])
    brightest = np.unravel_index(grey[..., 0].argmax(), grey.shape[:2])
    assert grey[darkest][0] == 0 and grey[brightest][0] == 255
    assert tuple(viridis[darkest]) == (68, 1, 84) and tuple(viridis[brightest]) == (253, 231, 37)
    assert (viridis.max(axis=2).astype(int) - viridis.min(axis=2) > 20).all()


# -- 4./5. publishing and the staged size check --------------------------------------------------------


def stage_file(store: Store, key: str, payload: bytes) -> Path:
    """Write ``payload`` at ``key`` of a local store directly on disk (not through imagelib)."""
    path = Path(store.path(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_local_publish_is_one_rename(tmp_path: Path) -> None:
    """A local publish moves the staged tree (same inodes: a rename, not copy-and-delete), leaves no
    staging behind and marks the version published; republishing the same key is refused."""
    store = Store(f"file://{tmp_path}/store")
    staging = store.new_staging()
    files = {f"{staging}/image.zarr/0/0.0": os.urandom(3000), f"{staging}/source/a.tif": os.urandom(1000)}
    inodes = {key: stage_file(store, key, payload).stat().st_ino for key, payload in files.items()}
    folder_inode = os.stat(store.path(staging)).st_ino
    assert not store.is_published("versions/v1")
    assert store.publish(staging, "versions/v1") is True
    assert store.is_published("versions/v1")
    assert not Path(store.path(staging)).exists()
    assert os.stat(store.path("versions/v1")).st_ino == folder_inode
    for key, payload in files.items():
        final = Path(store.path(key.replace(staging, "versions/v1")))
        assert final.read_bytes() == payload
        assert final.stat().st_ino == inodes[key], f"{key} was copied, not moved"
    again = store.new_staging()
    stage_file(store, f"{again}/source/a.tif", b"other")
    assert store.publish(again, "versions/v1") is False
    assert Path(store.path("versions/v1/source/a.tif")).read_bytes() == files[f"{staging}/source/a.tif"]
    assert not Path(store.path(again)).exists()


@pytest.mark.parametrize("kind", [Store, LocalStore])
def test_verify_size_refuses_a_wrong_size(tmp_path: Path, kind: type[Store]) -> None:
    """A staged object (or tree: the total of its files) shorter or longer than what was written is
    STORAGE_VERIFY_FAILED; the right size passes. LocalStore counts without fsspec, the same answer."""
    store = kind(f"file://{tmp_path}/store")
    staging = store.new_staging()
    key = f"{staging}/source/a.bin"
    stage_file(store, key, b"x" * 1000)
    stage_file(store, f"{staging}/source/deeper/b.bin", b"y" * 24)
    store.verify_size(key, 1000)
    store.verify_size(f"{staging}/source", 1024)
    for wrong in (999, 1001, 0):
        with pytest.raises(ImagelibError) as err:
            store.verify_size(key, wrong)
        assert err.value.code == "STORAGE_VERIFY_FAILED"
    with pytest.raises(ImagelibError) as err:
        store.verify_size(f"{staging}/source", 1000)
    assert err.value.code == "STORAGE_VERIFY_FAILED"


def test_verify_size_on_an_object_store(s3_store: str, moto_server: str) -> None:
    """The same check on S3 (moto): object written with boto3, not imagelib."""
    import boto3

    store = Store(s3_store)
    key = f"{store.new_staging()}/source/a.bin"
    bucket, prefix = s3_store.removeprefix("s3://").split("/", 1)
    boto3.client("s3", endpoint_url=moto_server).put_object(
        Bucket=bucket, Key=f"{prefix}/{key}", Body=b"y" * 777
    )
    store.verify_size(key, 777)
    with pytest.raises(ImagelibError) as err:
        store.verify_size(key, 778)
    assert err.value.code == "STORAGE_VERIFY_FAILED"


def test_ingest_publishes_nothing_when_the_staged_copy_is_short(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staged source copy that lost bytes after it was hashed fails the ingest with STORAGE_VERIFY_FAILED:
    no version in the catalog, nothing under ``versions/``, no staging left."""
    store_class = type(Store())
    put_file = store_class.put_file
    truncated: list[str] = []

    def short_copy(self: Store, local: Path, key: str, *args: Any, **kwargs: Any) -> str:
        digest = put_file(self, local, key, *args, **kwargs)
        if Path(self.path(key)).is_file():
            with open(self.path(key), "r+b") as fh:
                fh.truncate(os.path.getsize(self.path(key)) - 1)
            truncated.append(key)
        return digest

    monkeypatch.setattr(store_class, "put_file", short_copy)
    path = write_tiff(tmp_path / "short.tif", np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64))
    with pytest.raises(ImagelibError) as err:
        imagelib.ingest(path, "mut", "short")
    assert truncated, "the staged copy was not made through put_file"
    assert err.value.code == "STORAGE_VERIFY_FAILED"
    assert imagelib.versions("mut", "short") == []
    root = home / "store"
    assert not list((root / "versions").rglob("*")), "something was published"
    assert not [p for p in (root / "staging").rglob("*") if p.is_file()], "staging left behind"


# -- 6. half-up rounding of the 2×2 mean --------------------------------------------------------------


def reference_downsample(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Independent 2×2 mean: edge-replicate odd sides, average the valid pixels in float64, round half up
    as ``floor(mean + 0.5)``; a window without valid pixels becomes nodata."""
    h, w = block.shape[-2:]
    padded = np.pad(block, [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    windows = padded.reshape(*padded.shape[:-2], padded.shape[-2] // 2, 2, padded.shape[-1] // 2, 2)
    values = windows.astype(np.float64)
    valid = np.ones(values.shape, bool) if nodata is None else windows != nodata
    count = valid.sum(axis=(-3, -1))
    with np.errstate(invalid="ignore"):
        mean = np.where(valid, values, 0).sum(axis=(-3, -1)) / count
    out = np.floor(mean + 0.5)
    if nodata is not None:
        out[count == 0] = nodata
    return out.astype(block.dtype)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "int32", "uint32", "int64"])
@pytest.mark.parametrize("with_nodata", [False, True])
@pytest.mark.parametrize("shape", [(40, 60), (3, 17, 23)])
def test_downsample_rounds_half_up(dtype: str, with_nodata: bool, shape: tuple[int, ...]) -> None:
    """Integer 2×2 means that end in exactly .5 round up (2.5 → 3, -1.5 → -1), with and without nodata,
    odd edges included — equal to an independent ``floor(mean + 0.5)``."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(11)
    lo, hi = max(int(info.min), -6), min(int(info.max), 6)
    block = rng.integers(lo, hi + 1, shape).astype(dtype)
    nodata = hi + 3 if with_nodata else None  # outside the random values
    # hand-made windows whose means end in .5, in the top-left corner
    halves = [[0, 0, 0, 2], [2, 3, 3, 2], [1, 2, 1, 2], [4, 5, 4, 5]]
    if info.min < 0:
        halves += [[-1, -2, -1, -2], [0, -1, 0, -1], [-3, -2, -3, -2]]
    if with_nodata:
        halves += [[1, 2, nodata, nodata], [2, 3, nodata, nodata], [nodata, 4, 5, nodata]]
        block[..., 4:8, 20:30] = nodata  # whole windows without valid pixels
    for i, (a, b, c, d) in enumerate(halves):
        block[..., 0:2, 2 * i : 2 * i + 2] = np.array([[a, b], [c, d]], dtype=dtype)
    expected = reference_downsample(block, nodata)
    means = reference_mean_fraction(block, nodata)
    assert (means == 0.5).sum() >= len(halves)  # the test really exercises .5 cases
    np.testing.assert_array_equal(downsample2(block, nodata), expected)


def reference_mean_fraction(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Fractional part of every window's mean (even-sided part only; enough to count the .5 cases)."""
    h, w = (n - n % 2 for n in block.shape[-2:])
    windows = block[..., :h, :w].reshape(*block.shape[:-2], h // 2, 2, w // 2, 2).astype(np.float64)
    valid = np.ones(windows.shape, bool) if nodata is None else windows != nodata
    with np.errstate(invalid="ignore"):
        mean = np.where(valid, windows, 0).sum(axis=(-3, -1)) / valid.sum(axis=(-3, -1))
    return mean - np.floor(mean)


def test_downsample_rounds_half_up_at_dtype_extremes() -> None:
    """Large values (no overflow in the accumulator) also round half up."""
    for dtype in ("uint8", "uint16", "int16", "int32"):
        info = np.iinfo(dtype)
        block = np.array([[info.max, info.max - 1], [info.max, info.max - 1]], dtype=dtype)
        block = np.concatenate(
            [block, np.array([[info.min, info.min + 1], [info.min, info.min + 1]], dtype)], 1
        )
        np.testing.assert_array_equal(downsample2(block), reference_downsample(block, None))
        np.testing.assert_array_equal(
            downsample2(block, 0 if info.min < 0 else None),
            reference_downsample(block, 0 if info.min < 0 else None),
        )


# -- 7. the on-the-fly chain halo ------------------------------------------------------------------


def stripes(height: int, width: int, period: int, drift: int) -> np.ndarray:
    """0/255 stripes across x whose phase drifts by one pixel every ``drift`` rows: near every tile edge some
    rows have a step just outside a too-small halo, where the real and the reflected data differ most."""
    y, x = np.mgrid[0:height, 0:width]
    return (255 * (((x + y // drift) // period) % 2)).astype(np.uint8)


def test_chain_tiles_equal_the_chain_on_the_whole_level(home: Path, tmp_path: Path) -> None:
    """Tiles rendered on the fly (and pre-baked) with a gaussian chain equal scipy's gaussian over the whole
    stored level, rounded to 8 bits: interior, edge and corner tiles, two levels, steps across x and y.
    Sigma is in full-resolution pixels (halved on the level below) and the display stretch is the chain
    output's p2/p98 at full resolution, as the derived version would store them."""
    height, width, sigma = 700, 600, 3.0
    data = np.stack(
        [stripes(height, width, 16, 8), stripes(width, height, 16, 8).T, stripes(height, width, 24, 5)]
    )
    version = imagelib.ingest(write_tiff(tmp_path / "stripes.tif", data), "mut", "halo")["version"]
    chain = [{"op": "gaussian", "sigma": sigma}]
    top = full_resolution_level(height, width)
    out = tmp_path / "pyramid"
    tile_version(version, "dzi", out, fmt="png", chain=chain, name="halo")
    full = imagelib.open(version, level=0).values.astype(np.float64)
    output = np.stack([scipy.ndimage.gaussian_filter(p, sigma, mode="reflect") for p in full])
    lo, hi = (np.percentile(output.reshape(3, -1), q, axis=1)[:, None, None] for q in (2, 98))
    for shrink in (0, 1):
        level_pixels = imagelib.open(version, level=shrink).values.astype(np.float64)
        s = sigma / 2**shrink
        whole = np.stack([scipy.ndimage.gaussian_filter(p, s, mode="reflect") for p in level_pixels])
        expected = np.clip(np.floor((whole - lo) * (255 / (hi - lo)) + 0.5), 0, 255).transpose(1, 2, 0)
        h, w = expected.shape[:2]
        cols, rows = math.ceil(w / 254), math.ceil(h / 254)
        for col, row in {(0, 0), (1, 1), (cols - 1, rows - 1), (0, rows - 1), (cols - 1, 0)}:
            y0, x0 = max(row * 254 - 1, 0), max(col * 254 - 1, 0)
            y1, x1 = min((row + 1) * 254 + 1, h), min((col + 1) * 254 + 1, w)
            window = expected[y0:y1, x0:x1]
            live = decode(render_tile(version, top - shrink, col, row, "png", chain=chain, cache=None))
            baked = decode((out / "halo_files" / str(top - shrink) / f"{col}_{row}.png").read_bytes())
            assert live.shape == window.shape and baked.shape == window.shape
            assert np.abs(live.astype(int) - window).max() <= 1, (shrink, col, row)  # float32 vs float64
            np.testing.assert_array_equal(baked, live)


# -- 8. JPEG keeps each channel ----------------------------------------------------------------------

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 255, 255), (0, 0, 0)]


@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_encoded_colours_survive_an_independent_decoder(alpha: bool, fmt: str) -> None:
    """Regions of pure colours (32×32, several blocks each) keep their colour when decoded by Pillow:
    within JPEG tolerance for ``jpg`` (alpha dropped), exactly for ``png`` (alpha kept)."""
    side = 32
    img = np.zeros((side * 2, side * len(COLOURS), 4 if alpha else 3), np.uint8)
    for i, colour in enumerate(COLOURS):
        img[:, i * side : (i + 1) * side, :3] = colour
    if alpha:
        img[..., 3] = np.where(np.arange(img.shape[1]) % 3 == 0, 255, 77)[None, :]
    decoded = decode(encode(img, fmt))
    if fmt == "png":
        np.testing.assert_array_equal(decoded, img)
        return
    assert decoded.shape == (*img.shape[:2], 3)
    for i, colour in enumerate(COLOURS):
        centre = decoded[8:-8, i * side + 8 : (i + 1) * side - 8].reshape(-1, 3).astype(int)
        assert np.abs(centre - colour).max() <= 24, (colour, centre.mean(axis=0))


@pytest.mark.parametrize("channels", [1, 2])
def test_encoded_grey_jpeg_keeps_the_grey_band(channels: int) -> None:
    """Grey (+alpha) tiles encode the grey band, not the alpha: stripes of 0/128/255 under varying alpha."""
    levels = [0, 128, 255, 60]
    img = np.zeros((32, 32 * len(levels), channels), np.uint8)
    for i, value in enumerate(levels):
        img[:, i * 32 : (i + 1) * 32, 0] = value
    if channels == 2:
        img[..., 1] = 200
    decoded = decode(encode(img, "jpg"))
    assert decoded.shape == (32, 32 * len(levels), 1)
    for i, value in enumerate(levels):
        centre = decoded[8:-8, i * 32 + 8 : (i + 1) * 32 - 8].astype(int)
        assert np.abs(centre - value).max() <= 8, (value, centre.mean())
