"""Tiling (issue 4): DZI geometry equals ``vips dzsave``'s, pixels match the source and an independent
downsample, on-the-fly == pre-baked, any dtype/nodata renders masked, chains, cache, 3D, embed export."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

import imagelib
from imagelib.errors import ImagelibError
from imagelib.tiling.cache import TileCache
from imagelib.tiling.export import tile_version
from imagelib.tiling.render import render_tile, renderer_for
from imagelib.tiling.scale import Style

UTM = {"crs": "EPSG:32618", "transform": from_origin(300000, 2800000, 30, 30)}


def write_tiff(path: Path, data: np.ndarray, **profile: Any) -> Path:
    """A GeoTIFF of ``(bands, y, x)`` data (``crs``/``transform``/``nodata`` in profile)."""
    profile = {**UTM, **profile}
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype, **profile
    ) as ds:
        ds.write(data)
    return path


def ingest_array(folder: Path, name: str, data: np.ndarray, **profile: Any) -> str:
    """Ingest a synthetic GeoTIFF; return its version."""
    path = write_tiff(folder / f"{name}.tif", data, **profile)
    return imagelib.ingest(path, "tiling", name)["version"]


def png(data: bytes) -> np.ndarray:
    """Decoded tile pixels ``(h, w, c)``."""
    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr if arr.ndim == 3 else arr[..., None]


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradients plus noise, uint8 ``(3, h, w)``."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 40, (3, height, width))
    base = np.stack([x * 200 // max(width, 1), y * 200 // max(height, 1), (x + y) % 200])
    return (base + noise).astype(np.uint8)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One IMAGELIB_HOME for the module (ingest once, tile many times)."""
    root = tmp_path_factory.mktemp("tiling")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGELIB_HOME", str(root / "home"))
        mp.delenv("IMAGELIB_STORE", raising=False)
        mp.delenv("IMAGELIB_CATALOG", raising=False)
        yield root


@pytest.fixture(scope="module")
def rgb(lib: Path) -> tuple[str, np.ndarray]:
    """A 1000×777 RGB version and its pixels."""
    data = smooth_rgb(777, 1000)
    return ingest_array(lib, "rgb", data), data


def dzi_layout(folder: Path, name: str) -> tuple[dict[str, str], dict[int, dict[str, tuple[int, int]]]]:
    """The .dzi attributes and, per level, tile name (no suffix) → image size."""
    text = (folder / f"{name}.dzi").read_text()
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', text))
    attrs.pop("Format"), attrs.pop("xmlns"), attrs.pop("encoding", None), attrs.pop("version", None)
    levels = {}
    for level_dir in (folder / f"{name}_files").iterdir():
        if level_dir.is_dir():
            levels[int(level_dir.name)] = {t.stem: Image.open(t).size for t in level_dir.iterdir()}
    return attrs, levels


@pytest.mark.parametrize(("width", "height"), [(1000, 777), (4097, 3)])
def test_dzi_geometry_equals_vips_dzsave(lib: Path, tmp_path: Path, width: int, height: int) -> None:
    import pyvips  # the test extra installs it: a missing reference must fail, not skip

    data = np.random.default_rng(1).integers(0, 256, (3, height, width), dtype=np.uint8)
    version = ingest_array(lib, f"geom{width}x{height}", data)
    tile_version(version, "dzi", tmp_path / "ours", fmt="png", name="img")
    image = pyvips.Image.new_from_memory(
        np.ascontiguousarray(data.transpose(1, 2, 0)).data, width, height, 3, "uchar"
    )
    image.dzsave(str(tmp_path / "vips" / "img"), tile_size=254, overlap=1, suffix=".png")
    ours, theirs = dzi_layout(tmp_path / "ours", "img"), dzi_layout(tmp_path / "vips", "img")
    assert ours[0] == theirs[0]  # TileSize, Overlap, Width, Height
    assert sorted(ours[1]) == sorted(theirs[1]) == list(range(math.ceil(math.log2(width)) + 1))
    assert ours[1] == theirs[1]  # every level: same tile names and sizes


def test_full_resolution_pixels_match_source(rgb: tuple[str, np.ndarray], tmp_path: Path) -> None:
    version, data = rgb
    result = tile_version(version, "dzi", tmp_path, fmt="png", name="img")
    top = result["levels"] - 1
    for tile in (tmp_path / "img_files" / str(top)).iterdir():
        col, row = map(int, tile.stem.split("_"))
        y0, x0 = max(row * 254 - 1, 0), max(col * 254 - 1, 0)
        pixels = png(tile.read_bytes())
        expected = data[:, y0 : y0 + pixels.shape[0], x0 : x0 + pixels.shape[1]].transpose(1, 2, 0)
        np.testing.assert_array_equal(pixels, expected)


def block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    """Independent downsample: mean of each full ``factor × factor`` block (float)."""
    c, h, w = data.shape
    h2, w2 = h // factor, w // factor
    return data[:, : h2 * factor, : w2 * factor].reshape(c, h2, factor, w2, factor).mean(axis=(2, 4))


def test_lower_levels_match_independent_downsample(rgb: tuple[str, np.ndarray]) -> None:
    """Tolerance: each 2×2 halving rounds half up once (|error| ≤ 0.5, mean bias +1/8), so after k
    halvings max |Δ| ≤ k/2 + 0.5 and mean |Δ| ≤ k/8 + 0.25 grey levels on blocks fully inside the image."""
    version, data = rgb
    renderer = renderer_for(version)
    grid = renderer.dzi_grid()
    for k in range(1, 6):
        level = grid.levels - 1 - k
        expected = block_mean(data.astype(np.float64), 2**k)
        h, w = expected.shape[1:]
        ours = renderer.pixels(k, renderer.plane.full(k))[:, :h, :w].astype(np.float64)
        diff = np.abs(ours - expected)
        assert diff.max() <= k / 2 + 0.5, (k, diff.max())
        assert diff.mean() <= k / 8 + 0.25, (k, diff.mean())
        tile = png(renderer.dzi(grid, level, 0, 0, "png")).astype(np.float64)  # tiles carry those pixels
        th, tw = min(h, 255), min(w, 255)
        np.testing.assert_array_equal(tile[:th, :tw], ours[:, :th, :tw].transpose(1, 2, 0))


def test_prebaked_tiles_equal_on_the_fly(rgb: tuple[str, np.ndarray], tmp_path: Path) -> None:
    version, _ = rgb
    result = tile_version(version, "dzi", tmp_path, fmt="png", name="img")
    files = sorted((tmp_path / "img_files").rglob("*.png"))
    assert len(files) == result["tiles"] == 29
    for path in files:
        level, (col, row) = int(path.parent.name), map(int, path.stem.split("_"))
        assert render_tile(version, level, col, row, "png", cache=None) == path.read_bytes()


def test_requests_outside_the_pyramid_are_coded_errors(rgb: tuple[str, np.ndarray]) -> None:
    version, _ = rgb
    for z, x, y in [(11, 0, 0), (10, 4, 0), (10, 0, 4), (0, 1, 0), (-1, 0, 0), (10, -1, 0)]:
        with pytest.raises(ImagelibError) as err:
            render_tile(version, z, x, y)
        assert err.value.code == "TILE_NOT_FOUND"
    with pytest.raises(ImagelibError, match="format") as err:
        render_tile(version, 10, 0, 0, "gif")
    assert err.value.code == "USAGE"


def test_cache_keys_include_chain_and_format(rgb: tuple[str, np.ndarray]) -> None:
    version, _ = rgb
    cache = TileCache()
    first = render_tile(version, 9, 0, 0, "png", cache=cache)
    assert render_tile(version, 9, 0, 0, "png", cache=cache) is first  # served from the cache
    blurred = render_tile(version, 9, 0, 0, "png", chain=[{"op": "gaussian", "sigma": 2}], cache=cache)
    assert blurred != first
    assert render_tile(version, 9, 0, 0, "webp", cache=cache)[:4] == b"RIFF"
    assert len(cache.memory._data) == 3


def test_chain_tile_equals_whole_image_chain(rgb: tuple[str, np.ndarray]) -> None:
    """A tile rendered with a chain (reading only its halo) equals the chain run on the whole level
    (shown through an explicit 0..255 range: by default a chain's output is stretched to its p2/p98)."""
    from imagelib.filters import apply_chain

    version, data = rgb
    chain = [{"op": "gaussian", "sigma": 3}]
    whole = np.asarray(apply_chain(data.astype(np.float64), chain, dims=("band", "y", "x")))
    expected = np.clip(np.floor(whole + 0.5), 0, 255).astype(np.uint8)
    style = Style(rescale=(0, 255))
    for col, row in [(0, 0), (1, 1), (3, 3)]:
        tile = png(render_tile(version, 10, col, row, "png", chain=chain, style=style, cache=None))
        y0, x0 = max(row * 254 - 1, 0), max(col * 254 - 1, 0)
        window = expected[:, y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]].transpose(1, 2, 0)
        assert np.abs(tile.astype(int) - window).max() <= 1  # float32 vs float64 rounding at .5


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_any_dtype_with_nodata_renders_masked_and_stretched(lib: Path, dtype: str) -> None:
    height, width = 300, 400
    y, x = np.mgrid[0:height, 0:width]
    data = (1000 + 40 * x + 10 * y).astype(dtype)[None]
    nodata = 0 if dtype == "uint16" else -9999.0
    data[0, :, :50] = nodata  # a masked strip
    if dtype == "float32":
        data[0, 100:120, 200:260] = np.nan  # NaN is always masked
    version = ingest_array(lib, f"nodata_{dtype}", data, nodata=nodata)
    tile = png(render_tile(version, 9, 0, 0, "png", cache=None))  # full-res, 255×255 (+overlap)
    assert tile.shape[2] == 2  # grey + alpha
    invalid = (data[0, :255, :255] == nodata) | np.isnan(data[0, :255, :255])
    np.testing.assert_array_equal(tile[..., 1] == 0, invalid)
    valid = tile[..., 0][~invalid]
    stats = imagelib.open(version).attrs["stats"]
    lo, hi = stats["p2"][0], stats["p98"][0]
    expected = np.clip(np.floor((data[0, :255, :255][~invalid] - lo) * 255 / (hi - lo) + 0.5), 0, 255)
    assert np.abs(valid - expected).max() <= 1  # stretched from the ingest percentiles
    assert valid.std() > 30 and valid.min() == 0  # not blank
    rgb_tile = png(render_tile(version, 9, 0, 0, "png", style=Style(colormap="viridis"), cache=None))
    assert rgb_tile.shape[2] == 4 and (rgb_tile[..., 3] == 0).sum() == invalid.sum()
    assert tuple(rgb_tile[~invalid][np.argmin(valid)][:3]) == (68, 1, 84)  # viridis at 0


def test_band_selection_and_explicit_range(lib: Path) -> None:
    data = np.stack([np.full((64, 64), v, np.uint16) for v in (100, 200, 300, 400)])
    version = ingest_array(lib, "four_bands", data)
    style = Style(bands=(4, 3, 2), rescale=(0, 400))
    tile = png(render_tile(version, 6, 0, 0, "png", style=style, cache=None))
    assert tile.shape == (64, 64, 3)
    np.testing.assert_array_equal(tile[0, 0], [255, 191, 128])
    with pytest.raises(ImagelibError) as err:
        render_tile(version, 6, 0, 0, "png", style=Style(bands=(5,)))
    assert err.value.code == "BAND_INDEX_INVALID"


def test_sample_float_and_uint16_files(lib: Path, data_dir: Path) -> None:
    floats = imagelib.ingest(data_dir / "float_raster_with_nodata.tif", "tiling", "floats")["version"]
    tile = png(render_tile(floats, 4, 0, 0, "png", cache=None))
    assert (tile[..., -1] == 0).any() and (tile[..., -1] == 255).any()
    assert tile[..., 0][tile[..., -1] == 255].std() > 0
    rgba16 = imagelib.ingest(data_dir / "RGBA.uint16.tif", "tiling", "rgba16")["version"]
    tile = png(render_tile(rgba16, 10, 0, 0, "png", cache=None))
    assert tile.shape[2] == 3 and (tile == 128).all()  # bands 1-3 constant (p2 == p98): mid-grey
    tile = png(render_tile(rgba16, 10, 0, 0, "png", style=Style(bands=(4,)), cache=None))
    assert tile.shape[2] == 1 and tile.std() > 10


@pytest.fixture(scope="module")
def volume(lib: Path) -> tuple[str, np.ndarray]:
    """A (20, 120, 80) uint16 OME-TIFF volume with 4× coarser z spacing and a bright block."""
    tifffile = pytest.importorskip("tifffile")
    vol = np.full((20, 120, 80), 100, np.uint16)
    vol[8:12, 30:90, 20:60] = 1000  # 5 % of the voxels, centred on (z 10, y 60, x 40)
    path = lib / "vol.ome.tif"
    tifffile.imwrite(
        path,
        vol,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeZ": 4.0, "PhysicalSizeY": 1.0, "PhysicalSizeX": 1.0},
    )
    return imagelib.ingest(path, "tiling", "vol")["version"], vol


def bright_centre(tile: np.ndarray) -> tuple[float, float]:
    """Row/column centre of the bright pixels of a grey tile."""
    rows, cols = np.nonzero(tile[..., 0] > 128)
    return rows.mean(), cols.mean()


def test_volume_slices_and_orthogonal_views_respect_voxel_size(
    volume: tuple[str, np.ndarray], tmp_path: Path
) -> None:
    from imagelib.tiling.export import orthogonal_views

    version, _ = volume
    xy = png(render_tile(version, 7, 0, 0, "png", axis="z", index=10, cache=None))
    assert xy.shape[:2] == (120, 80)
    np.testing.assert_allclose(bright_centre(xy), (59.5, 39.5))
    assert (png(render_tile(version, 7, 0, 0, "png", axis="z", index=0, cache=None)) < 128).all()
    result = orthogonal_views(version, tmp_path, point=(10, 60, 40), embed=True)
    assert result["views"] == {
        "xy": {"width": 80, "height": 120},
        "xz": {"width": 80, "height": 80},
        "yz": {"width": 120, "height": 80},
    }  # z: 20 slices × 4 µm = 80 px
    xz = png((tmp_path / "xz_files" / "7" / "0_0.png").read_bytes())
    assert xz.shape[:2] == (80, 80)
    assert np.allclose(bright_centre(xz), (40, 39.5), atol=1.0)  # z 8..12 → rows 32..48
    assert (tmp_path / "index.html").read_text().count("OpenSeadragon({") == 3
    with pytest.raises(ImagelibError) as err:
        render_tile(version, 7, 0, 0, axis="z", index=20)
    assert err.value.code == "USAGE"


def test_embed_export_is_self_contained(rgb: tuple[str, np.ndarray], tmp_path: Path) -> None:
    from imagelib.tiling.embed import iframe_snippet

    version, _ = rgb
    result = tile_version(version, "dzi", tmp_path, embed=True)
    page = (tmp_path / "index.html").read_text()
    assert not re.search(r"(https?:)?//[a-z]", page.replace("http://schemas.microsoft.com/deepzoom/2008", ""))
    for src in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert (tmp_path / src).is_file(), src
    assert (
        f'"Url": "{version}_files/"' in page and (tmp_path / f"{version}_files" / "10" / "3_3.jpg").is_file()
    )
    assert result["iframe"] == iframe_snippet(tmp_path.as_uri())
    assert result["iframe"].startswith(f'<iframe src="{tmp_path.as_uri()}/index.html"')


def test_export_to_object_store(s3_store: str, tmp_path: Path) -> None:
    import s3fs

    data = smooth_rgb(300, 500)
    version = ingest_array(tmp_path, "s3rgb", data)  # stored in the bucket too: tiles read from S3
    bucket = s3_store.split("/")[2]
    result = tile_version(version, "xyz", f"s3://{bucket}/site", embed=True)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    keys = {k.split("/site/", 1)[1] for k in fs.find(f"{bucket}/site")}
    assert {"index.html", "vendor/leaflet.js", "vendor/leaflet.css"} <= keys
    assert len([k for k in keys if k.endswith(".png")]) == result["tiles"] > 0
    head = fs.call_s3("head_object", Bucket=bucket, Key="site/index.html")
    assert head["ContentType"] == "text/html"


def test_cli_tile_command(rgb: tuple[str, np.ndarray], tmp_path: Path) -> None:
    version, _ = rgb
    chain = tmp_path / "chain.json"
    chain.write_text('[{"op": "gaussian", "sigma": 1}]')
    cmd = [
        sys.executable,
        "-c",
        "from imagelib.cli import app; app()",
        "tile",
        version,
        "--out",
        str(tmp_path / "o"),
        "--format",
        "png",
        "--chain",
        str(chain),
        "--embed",
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["tiles"] == 29 and result["levels"] == 11 and "tile/s" in proc.stderr  # tqdm on stderr
    tile = (tmp_path / "o" / f"{version}_files" / "10" / "1_1.png").read_bytes()
    assert tile == render_tile(version, 10, 1, 1, "png", chain=json.loads(chain.read_text()), cache=None)
    bad = subprocess.run(
        [*cmd[:5], "--scheme", "xyz", "--out", str(tmp_path / "x"), "--axis", "y", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["code"] == "USAGE"
