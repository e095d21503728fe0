"""XYZ / WebMercatorQuad tiles (issue 4): pixels land where pyproj + morecantile say they should,
nodata is transparent, the zoom range follows the native resolution, pre-baked == on-the-fly."""

from __future__ import annotations

import io
import math
from pathlib import Path

import morecantile
import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer
from test_tiling import ingest_array, lib, png  # noqa: F401 - module-scoped IMAGELIB_HOME fixture

import imagelib
from imagelib.errors import ImagelibError
from imagelib.tiling.export import tile_version
from imagelib.tiling.render import render_tile, renderer_for

TMS = morecantile.tms.get("WebMercatorQuad")


def source_pixels(tile: morecantile.Tile, transform: list[float], crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Independently (pyproj): the source row/column under each tile pixel centre, ``(256, 256)`` each."""
    bounds = TMS.xy_bounds(tile)
    res = (bounds.right - bounds.left) / 256
    cols, rows = np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5)
    sx, sy = Transformer.from_crs("EPSG:3857", crs, always_xy=True).transform(
        bounds.left + cols * res, bounds.top - rows * res
    )
    a, _, c, _, e, f = transform
    return np.floor((sy - f) / e).astype(int), np.floor((sx - c) / a).astype(int)


def test_sample_geotiff_pixels_land_where_pyproj_says(lib: Path, data_dir: Path) -> None:  # noqa: F811
    """RGB.byte.tif (UTM 18N, nodata 0) at full resolution: ≥ 97 % of tile pixels equal the source pixel
    under their centre and every other one its neighbour (GDAL's nearest-neighbour warper lands up to
    ~0.04 px off pyproj on pixel borders), alpha matches the nodata/outside mask, and the ground point
    picked in the source appears in the tile and pixel morecantile computes for it."""
    rasterio = pytest.importorskip("rasterio")
    version = imagelib.ingest(data_dir / "RGB.byte.tif", "xyz", "rgb")["version"]
    with rasterio.open(data_dir / "RGB.byte.tif") as ds:
        data, transform = ds.read(), list(ds.transform)[:6]
    grid = renderer_for(version).xyz_grid
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(
        transform[2] + 400.5 * transform[0], transform[5] + 350.5 * transform[4]
    )  # pixel (350, 400)
    tile = TMS.tile(lon, lat, grid.maxzoom)
    pixels = png(render_tile(version, tile.z, tile.x, tile.y, "png", scheme="xyz", cache=None))
    assert pixels.shape == (256, 256, 4)
    rows, cols = source_pixels(tile, transform, "EPSG:32618")
    inside = (rows >= 0) & (rows < data.shape[1]) & (cols >= 0) & (cols < data.shape[2])
    rows, cols = np.clip(rows, 0, data.shape[1] - 1), np.clip(cols, 0, data.shape[2] - 1)
    valid = inside & np.any(data[:, rows, cols] != 0, axis=0)
    opaque = pixels[..., 3] == 255
    assert np.mean(opaque == valid) > 0.99
    both = valid & opaque
    exact = np.all(pixels[..., :3] == data[:, rows, cols].transpose(1, 2, 0), axis=-1)
    assert exact[both].mean() > 0.97
    near = np.zeros_like(exact)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r, c = np.clip(rows + dy, 0, data.shape[1] - 1), np.clip(cols + dx, 0, data.shape[2] - 1)
            near |= np.all(pixels[..., :3] == data[:, r, c].transpose(1, 2, 0), axis=-1)
    assert near[both].all()
    x, y = TMS.xy(lon, lat)
    b = TMS.xy_bounds(tile)
    px, py = int((x - b.left) / (b.right - b.left) * 256), int((b.top - y) / (b.top - b.bottom) * 256)
    assert (rows[py, px], cols[py, px]) == (350, 400)
    np.testing.assert_array_equal(pixels[py, px, :3], data[:, 350, 400])


def test_marker_lands_in_the_tile_and_pixel_from_morecantile(lib: Path) -> None:  # noqa: F811
    data = np.zeros((3, 500, 600), np.uint8)
    data[0], data[1], data[2] = 60, 120, 60
    data[:, 198:205, 298:305] = np.array([255, 0, 255], np.uint8)[
        :, None, None
    ]  # magenta 7×7, centre (201, 301)
    version = ingest_array(lib, "marker", data)
    t = [30.0, 0.0, 300000.0, 0.0, -30.0, 2800000.0]
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(
        t[2] + 301.5 * t[0], t[5] + 201.5 * t[4]
    )
    grid = renderer_for(version).xyz_grid
    for z in (grid.maxzoom, grid.maxzoom - 1):
        tile = TMS.tile(lon, lat, z)
        x, y = TMS.xy(lon, lat)
        b = TMS.xy_bounds(tile)
        px, py = int((x - b.left) / (b.right - b.left) * 256), int((b.top - y) / (b.top - b.bottom) * 256)
        pixels = png(render_tile(version, z, tile.x, tile.y, "png", scheme="xyz", cache=None))
        np.testing.assert_array_equal(pixels[py, px], [255, 0, 255, 255])
        assert (np.all(pixels[..., :3] == [255, 0, 255], axis=-1)).sum() < 100  # only the marker


def test_zoom_range_from_native_resolution_and_not_found(lib: Path) -> None:  # noqa: F811
    version = ingest_array(lib, "zooms", np.full((1, 400, 500), 7, np.uint8))
    grid = renderer_for(version).xyz_grid
    cos_lat = math.cos(math.radians((grid.lonlat[1] + grid.lonlat[3]) / 2))
    native = 30 / cos_lat  # 30 m UTM pixels, Mercator metres at that latitude (scale factor ≈ 1)
    assert 1 / math.sqrt(2) <= TMS.matrix(grid.maxzoom).cellSize / native <= math.sqrt(2) * 1.01
    xmin, xmax, ymin, ymax = grid.tile_range(grid.minzoom)
    assert (xmax - xmin + 1) * (ymax - ymin + 1) <= 4  # the whole image in a tile or two
    for z, x, y in [
        (grid.maxzoom + 1, 0, 0),
        (grid.minzoom - 1, 0, 0),
        (grid.maxzoom, xmax + 1, ymin),
        (grid.maxzoom, xmin, ymin - 1),
    ]:
        with pytest.raises(ImagelibError) as err:
            render_tile(version, z, x, y, scheme="xyz")
        assert err.value.code == "TILE_NOT_FOUND"


def test_prebaked_xyz_equals_on_the_fly_and_nodata_is_transparent(lib: Path, tmp_path: Path) -> None:  # noqa: F811
    y, x = np.mgrid[0:300, 0:400]
    data = (x * 3.5 + y).astype(np.float32)[None]
    data[0, :, :100] = -9999.0
    data[0, 150:, 200:] = np.nan
    version = ingest_array(lib, "xyz_float", data, nodata=-9999.0)
    result = tile_version(version, "xyz", tmp_path)
    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) == result["tiles"] > 1
    alphas = []
    for path in files:
        z, tx, ty = int(path.parent.parent.name), int(path.parent.name), int(path.stem)
        assert render_tile(version, z, tx, ty, "png", scheme="xyz", cache=None) == path.read_bytes()
        tile = png(path.read_bytes())
        alphas.append(tile[..., 1])
        if (tile[..., 1] == 255).any():
            assert tile[..., 0][tile[..., 1] == 255].std() > 5  # stretched, not blank
    alpha = np.concatenate([a.ravel() for a in alphas])
    assert (alpha == 0).any() and (alpha == 255).any() and set(np.unique(alpha)) <= {0, 255}


def test_xyz_needs_a_georeferenced_version(lib: Path, data_dir: Path) -> None:  # noqa: F811
    version = imagelib.ingest(data_dir / "s_1_t_1_c_1_z_1.ome.tiff", "xyz", "ome")["version"]
    with pytest.raises(ImagelibError) as err:
        render_tile(version, 0, 0, 0, scheme="xyz")
    assert err.value.code == "NOT_GEOREFERENCED"


def test_global_geographic_raster(lib: Path, data_dir: Path) -> None:  # noqa: F811
    version = imagelib.ingest(data_dir / "world.rgb.tif", "xyz", "world")["version"]
    grid = renderer_for(version).xyz_grid
    assert grid.lonlat[1] == pytest.approx(-85.0511, abs=1e-3) or grid.lonlat[1] > -85.06
    data = render_tile(version, grid.minzoom, *grid.tile_range(grid.minzoom)[::2], scheme="xyz", cache=None)
    tile = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))  # an opaque tile has no alpha channel
    assert tile[..., 3].mean() > 128 and tile[..., :3].std() > 10


def test_inside_shortcut_agrees_with_the_per_pixel_test(lib: Path) -> None:  # noqa: F811
    """``nearest_map`` skips the per-pixel inside test when the knots say every pixel is inside: over
    every tile of every zoom of a 1200×1400 image (edge, corner and interior tiles) that answer equals
    the per-pixel test, interior tiles do take the shortcut, and the interpolation is bit-identical to
    the plain broadcasting formula it replaced."""
    from imagelib.tiling.xyz import _bilinear, _within

    version = ingest_array(lib, "inside", np.full((1, 1200, 1400), 9, np.uint8))
    renderer = renderer_for(version)
    grid, shortcuts, masked = renderer.xyz_grid, 0, 0
    for z, x, y in grid.tiles():
        level = grid.source_level(z, renderer.plane.levels)
        shape = renderer.plane.shape(level)
        rows, cols, inside = grid.nearest_map(z, x, y, level, shape)
        per_pixel = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
        if inside is None:
            shortcuts += 1
            assert per_pixel.all()
        else:
            masked += 1
            np.testing.assert_array_equal(inside, per_pixel)
    assert shortcuts > 0 and masked > 0
    # a level whose last row or column is the tile's last (or one short of it): the border cases
    z, x, y = next(
        t for t in grid.tiles() if t[0] == grid.maxzoom and grid.nearest_map(*t, 0, shape)[2] is None
    )
    rows, cols, _ = grid.nearest_map(z, x, y, 0, shape)
    for size in [(int(rows.max()) + k, int(cols.max()) + 5) for k in (0, 1, 2)] + [
        (int(rows.max()) + 5, int(cols.max()) + k) for k in (0, 1, 2)
    ]:
        _, _, inside = grid.nearest_map(z, x, y, 0, size)
        per_pixel = (rows < size[0]) & (cols < size[1])
        assert per_pixel.all() if inside is None else np.array_equal(inside, per_pixel)
    assert not _within(np.array([-1e-9, 5.0]), 10) and not _within(np.array([0.0, 10 - 1e-9]), 10)
    assert _within(np.array([0.0, 9.99]), 10)
    knots = np.random.default_rng(3).normal(500.0, 80.0, (17, 17))
    f = (np.arange(16) + 0.5) / 16
    along_y = knots[:-1, None, :] * (1 - f)[:, None] + knots[1:, None, :] * f[:, None]
    expected = (along_y[:, :, :-1, None] * (1 - f) + along_y[:, :, 1:, None] * f).reshape(256, 256)
    assert np.array_equal(_bilinear(knots, 16), expected)


def test_opaque_tiles_decode_to_the_pixels_of_the_alpha_tiles(lib: Path) -> None:  # noqa: F811
    """Interior tiles of an image without nodata are written without alpha (RGB), edge tiles with it; an
    interior tile's colours are the source pixels under its pixel centres (pyproj, independently)."""
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, (3, 1200, 1400), dtype=np.uint8)
    version = ingest_array(lib, "opaque", data)
    grid = renderer_for(version).xyz_grid
    modes: dict[str, list[tuple[int, int, int]]] = {}
    for z, x, y in grid.tiles():
        with Image.open(io.BytesIO(render_tile(version, z, x, y, "png", scheme="xyz", cache=None))) as im:
            modes.setdefault(im.mode, []).append((z, x, y))
    assert set(modes) == {"RGB", "RGBA"}
    z, x, y = next(t for t in modes["RGB"] if t[0] == grid.maxzoom)  # full resolution: level 0's pixels
    pixels = png(render_tile(version, z, x, y, "png", scheme="xyz", cache=None))
    transform = [30.0, 0.0, 300000.0, 0.0, -30.0, 2800000.0]  # test_tiling's UTM profile
    rows, cols = source_pixels(morecantile.Tile(x, y, z), transform, "EPSG:32618")
    exact = np.all(pixels == data[:, rows, cols].transpose(1, 2, 0), axis=-1)
    assert exact.mean() > 0.99
