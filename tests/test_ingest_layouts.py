"""Issue 12: the fast ingest paths give the same pixels. Tiled vs striped, planar vs pixel-interleaved,
GeoTIFF vs plain tiled TIFF of one raster → identical stored levels and DZI tiles; a volume streamed in
one pass == the old two-pass build; ``ingest --tiles dzi`` writes exactly what ``imagelib tile`` does."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
import pytest
import rasterio
import tifffile
import xarray as xr
import zarr
from rasterio.transform import from_origin

import imagelib
from imagelib import multiscale
from imagelib.errors import ImagelibError, UsageError
from imagelib.formats import open_array
from imagelib.formats.lazy import is_tiled
from imagelib.ingestion import TileRequest
from imagelib.storage import LocalStore
from imagelib.stored import Staging, open_group, total_pixels
from imagelib.tiling.export import tile_version
from imagelib.validation.content import STRIP_ROWS, iter_blocks, z_order

UTM = {"crs": "EPSG:32618", "transform": from_origin(300000, 2800000, 30, 30)}


def raster(bands: int, height: int, width: int, dtype: str = "uint8", seed: int = 0) -> np.ndarray:
    """Gradients plus noise, ``(bands, h, w)``; full range for uint16."""
    top = 255 if dtype == "uint8" else 4000
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, top // 6, (bands, height, width))
    base = np.stack([(x * (b + 1) + y * (bands - b)) % (top - top // 6) for b in range(bands)])
    return (base + noise).astype(dtype)


def geotiff(path: Path, data: np.ndarray, **layout: Any) -> Path:
    """A GeoTIFF of ``data`` in the given layout (tiled/blocks, interleave, compression)."""
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype, **UTM, **layout
    ) as ds:
        ds.write(data)
    return path


def levels_of(version: str) -> list[np.ndarray]:
    """Every stored level of a version, read back through zarr."""
    group, _ = open_group(version)
    return [group[str(k)][...] for k in range(len(group))]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One IMAGELIB_HOME for the module."""
    root = tmp_path_factory.mktemp("layouts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGELIB_HOME", str(root / "home"))
        mp.delenv("IMAGELIB_STORE", raising=False)
        mp.delenv("IMAGELIB_CATALOG", raising=False)
        yield root


# 2300 rows: three 1024-row strips, the last one partial and odd in height at level 1. Tiles that divide
# 1024 are read in Z-order blocks, the 384 px ones (and strips) in whole-row strips.
Z_ORDER_LAYOUTS = {"tiled-512", "tiled-256-deflate"}
LAYOUTS = {
    "striped": {},
    "tiled-512": {"tiled": True, "blockxsize": 512, "blockysize": 512},
    "tiled-256-deflate": {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"},
    "tiled-384-planar": {"tiled": True, "blockxsize": 384, "blockysize": 384, "interleave": "band"},
    "striped-planar-lzw": {"interleave": "band", "compress": "lzw"},
}


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_every_layout_of_one_raster_stores_the_same_levels_and_tiles(
    lib: Path, tmp_path: Path, dtype: str
) -> None:
    bands = 3 if dtype == "uint8" else 1
    data = raster(bands, 2300, 1337, dtype)
    stored: dict[str, list[np.ndarray]] = {}
    tiles: dict[str, dict[str, bytes]] = {}
    for name, layout in LAYOUTS.items():
        path = geotiff(tmp_path / f"{name}.tif", data, **layout)
        with rasterio.open(path) as ds:  # the file really has the layout under test
            assert ds.profile.get("tiled", False) == layout.get("tiled", False)
            assert ds.block_shapes[0][0] == layout.get("blockysize", ds.block_shapes[0][0])
        widths = {index[-1].stop - index[-1].start for index, _ in read_order(path)}
        assert widths == ({STRIP_ROWS, 1337 - STRIP_ROWS} if name in Z_ORDER_LAYOUTS else {1337}), name
        version = imagelib.ingest(path, "layouts", f"{name}-{dtype}")["version"]
        stored[name] = levels_of(version)
        out = tmp_path / f"dzi-{name}"
        tile_version(version, "dzi", out, name="img")
        tiles[name] = tree(out)
    np.testing.assert_array_equal(stored["striped"][0], data)
    assert len(stored["striped"]) == len(multiscale.level_shapes(data.shape)) == 5
    # level 1 against an independent 2×2 mean (rounding half up), not the code under test
    padded = np.pad(data.astype(np.int64), [(0, 0), (0, 0), (0, 1)], mode="edge")
    quads = padded[:, ::2, ::2], padded[:, 1::2, ::2], padded[:, ::2, 1::2], padded[:, 1::2, 1::2]
    means = (sum(quads) + 2) // 4
    np.testing.assert_array_equal(stored["striped"][1], means.astype(dtype))
    for name in LAYOUTS:
        assert len(stored[name]) == len(stored["striped"]), name
        for level, (a, b) in enumerate(zip(stored[name], stored["striped"], strict=True)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} level {level}")
        assert tiles[name] == tiles["striped"], name
    assert len(tiles["striped"]) > 20


def read_order(path: Path) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """The blocks the ingest read-through yields for a file, in order (index has an x slice in Z order)."""
    data = open_array(path)
    return [
        (index if len(index) == 3 else (*index, slice(0, data.shape[-1])), b)
        for index, b in iter_blocks(data)
    ]


def morton_key(cell: tuple[int, int]) -> int:
    """Interleave the bits of (row, column), row bit above column bit: the Z-order rank of a cell."""
    y, x = cell
    return sum(((y >> b) & 1) << (2 * b + 1) | ((x >> b) & 1) << (2 * b) for b in range(16))


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 5), (8, 8), (7, 2), (1, 9)])
def test_z_order_visits_each_cell_once_in_morton_order(rows: int, cols: int) -> None:
    cells = list(z_order(rows, cols))
    grid = [(y, x) for y in range(rows) for x in range(cols)]
    assert cells == sorted(grid, key=morton_key)  # an independent definition: bit interleaving


def test_tiled_read_through_covers_the_image_once_in_chunk_blocks(tmp_path: Path) -> None:
    """Z-order blocks tile the image exactly, none wider or taller than a stored chunk, pixels intact."""
    data = raster(3, 2300, 3100, seed=2)
    path = geotiff(tmp_path / "t.tif", data, tiled=True, blockxsize=256, blockysize=256)
    assert is_tiled(open_array(path).encoding, 3100)
    seen = np.zeros(data.shape[1:], dtype=np.uint8)
    blocks = read_order(path)
    for (_, rows, cols), block in blocks:
        assert block.shape[-2:] == (rows.stop - rows.start, cols.stop - cols.start)
        assert max(block.shape[-2:]) <= STRIP_ROWS
        np.testing.assert_array_equal(block, data[:, rows, cols])
        seen[rows, cols] += 1
    assert (seen == 1).all()
    starts = [(rows.start // STRIP_ROWS, cols.start // STRIP_ROWS) for (_, rows, cols), _ in blocks]
    assert starts == sorted(starts, key=morton_key) and len(starts) == 3 * 4


def test_z_order_pyramid_keeps_one_open_chunk_per_level(tmp_path: Path) -> None:
    """Memory flat in the width: while streaming, each lower level holds at most one unfinished chunk,
    and the levels equal the two-pass build."""
    a = np.random.default_rng(8).integers(0, 255, (2, 4500, 9300), dtype=np.uint8)
    data = xr.DataArray(da.from_array(a, chunks=(2, 2048, 2048)), dims=("band", "y", "x"))
    data.encoding["preferred_chunks"] = {"y": 512, "x": 512}
    group = multiscale.create(zarr.storage.LocalStore(tmp_path / "z.zarr"), data, {})
    open_per_level = []
    with multiscale.PyramidWriter(group, data.dims) as writer:
        for index, block in iter_blocks(data):
            assert len(index) == 3
            writer.write(index, block)
            open_per_level.append(Counter(level for level, _, _ in writer.open))
        writer.close()
    assert max(max(c.values(), default=0) for c in open_per_level) == 1
    assert max(sum(c.values()) for c in open_per_level) >= 3  # several levels were open at once
    two_pass = multiscale.create(zarr.storage.MemoryStore(), data, {})
    two_pass["0"][...] = a
    multiscale.build_lower_levels(two_pass)
    assert len(group) == len(two_pass) == 7
    for level in range(len(two_pass)):
        np.testing.assert_array_equal(group[str(level)][...], two_pass[str(level)][...], f"level {level}")


@pytest.mark.parametrize(("bands", "dtype", "bound"), [(3, "uint8", 8), (5, "float64", 2)])
def test_z_order_writes_in_flight_are_bounded_by_bytes(bands: int, dtype: str, bound: int) -> None:
    """3 MiB blocks: 8 may wait for the writer thread; 40 MiB blocks: 2 (64 MiB budget, at least 2)."""
    data = xr.DataArray(
        da.zeros((bands, 1100, 1100), dtype=dtype, chunks=(bands, 2048, 2048)), dims=("band", "y", "x")
    )
    data.encoding["preferred_chunks"] = {"y": 256, "x": 256}
    group = multiscale.create(zarr.storage.MemoryStore(), data, {})
    with multiscale.PyramidWriter(group, data.dims) as writer:
        index, block = next(iter_blocks(data))
        writer.write(index, block)
        assert writer._bound == bound


def test_a_missing_z_order_block_is_an_error_not_a_short_pyramid(tmp_path: Path) -> None:
    a = np.zeros((3000, 3000), dtype=np.uint16)
    data = xr.DataArray(da.from_array(a, chunks=2048), dims=("y", "x"))
    data.encoding["preferred_chunks"] = {"y": 256, "x": 256}
    group = multiscale.create(zarr.storage.MemoryStore(), data, {})
    with multiscale.PyramidWriter(group, data.dims) as writer:
        for index, block in list(iter_blocks(data))[:-1]:
            writer.write(index, block)
        with pytest.raises(RuntimeError, match="never completed"):
            writer.close()


@pytest.mark.parametrize("tiled", [False, True])
def test_progress_counts_every_pixel_once(tmp_path: Path, tiled: bool) -> None:
    path = geotiff(tmp_path / "p.tif", raster(3, 2100, 2500), tiled=tiled)
    data = open_array(path)
    counted: list[int] = []
    with Staging(LocalStore(str(tmp_path / "store"))) as staging:
        staging.write_levels(data, {}, counted.append)
    assert sum(counted) == total_pixels(data) == 2100 * 2500
    assert len(counted) == (9 if tiled else 1)  # 3 × 3 Z-order blocks, or one strip within the budget


def test_plain_tiled_tiff_pixel_interleaved_and_planar_equal_the_geotiff(lib: Path, tmp_path: Path) -> None:
    data = raster(3, 1500, 2100, seed=3)
    reference = levels_of(imagelib.ingest(geotiff(tmp_path / "ref.tif", data), "layouts", "tref")["version"])
    files = {
        "interleaved-tiled": dict(data=np.moveaxis(data, 0, -1), photometric="rgb", tile=(256, 256)),
        "planar-tiled": dict(data=data, photometric="rgb", planarconfig="separate", tile=(512, 512)),
        "interleaved-striped": dict(data=np.moveaxis(data, 0, -1), photometric="rgb", rowsperstrip=100),
    }
    for name, options in files.items():
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, **options)
        assert is_tiled(open_array(path).encoding, 2100) == ("tile" in options)  # read in Z order
        summary = imagelib.ingest(path, "layouts", name)
        assert summary["format"] == "tiff" and summary["dims"] == ["band", "y", "x"], summary
        for level, (a, b) in enumerate(zip(levels_of(summary["version"]), reference, strict=True)):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} level {level}")


def test_chunked_hdf5_and_zarr_are_read_in_z_order_and_store_the_same_levels(
    lib: Path, tmp_path: Path
) -> None:
    data = raster(3, 2300, 2500, seed=12)
    reference = levels_of(imagelib.ingest(geotiff(tmp_path / "ref.tif", data), "layouts", "zref")["version"])
    h5 = tmp_path / "chunked.h5"
    with h5py.File(h5, "w") as fh:
        fh.create_dataset("img", data=data[0], chunks=(256, 512), compression="gzip")
        fh.create_dataset("flat", data=data[0])  # contiguous: read in strips
    zpath = tmp_path / "chunked.zarr"
    zarr.create_array(zpath, shape=data.shape, chunks=(3, 512, 512), dtype=data.dtype)[...] = data
    cases = {
        f"{h5}#/img": (reference, True),
        f"{h5}#/flat": (reference, False),
        str(zpath): (reference, True),
    }
    for source, (levels, tiled) in cases.items():
        opened = open_array(source)
        assert is_tiled(opened.encoding, 2500) == tiled, source
        summary = imagelib.ingest(source, "layouts", f"z{len(source)}{tiled}")
        stored = levels_of(summary["version"])
        for level, (a, b) in enumerate(zip(stored, levels, strict=True)):
            expected = b if a.ndim == b.ndim else b[0]  # the HDF5 datasets hold band 1 only
            np.testing.assert_array_equal(a, expected, err_msg=f"{source} level {level}")


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("shape", [(5, 1500, 1100), (4, 2049, 700), (3, 1101, 2300)])
def test_volume_streamed_in_one_pass_equals_the_two_pass_build(
    tmp_path: Path, shape: tuple[int, int, int], local: bool, tiled: bool
) -> None:
    """Slabs of z planes, each in strips or (a chunked source: HDF5, Zarr) in Z-order blocks."""
    a = np.random.default_rng(5).integers(0, 60000, shape, dtype=np.uint16)
    a[:, :7, :9] = 0  # some nodata
    data = xr.DataArray(da.from_array(a, chunks=(1, 512, 512)), dims=("z", "y", "x"), attrs={"nodata": 0})
    if tiled:
        data.encoding["preferred_chunks"] = {"y": 512, "x": 512}
    where = zarr.storage.LocalStore(tmp_path / "v.zarr") if local else zarr.storage.MemoryStore()
    streamed = multiscale.create(where, data, {})
    with multiscale.PyramidWriter(streamed, data.dims, nodata=0) as writer:
        assert (writer.writers[0].folder is not None) == local  # both chunk writers are under test
        blocks = list(iter_blocks(data, block_bytes=5 * 1024 * 1024))  # slabs of 2 planes, 1024-row strips
        assert len({index[0].start for index, _ in blocks}) > 1 < len({index[1].start for index, _ in blocks})
        assert {len(index) for index, _ in blocks} == {3 if tiled else 2}  # z, y and x slices in Z order
        planes = max(index[0].stop - index[0].start for index, _ in blocks)
        read = min(shape[1], 2048) * min(shape[2], 2048) if tiled else 1024 * shape[2]
        assert planes == max(1, 5 * 1024 * 1024 // (read * 2))  # a slab's read stays within the budget
        for index, block in blocks:
            writer.write(index, block)
        writer.close()
    two_pass = multiscale.create(zarr.storage.MemoryStore(), data, {})
    two_pass["0"][...] = a
    multiscale.build_lower_levels(two_pass, nodata=0)
    assert len(streamed) == len(two_pass) > 1
    for level in range(len(two_pass)):
        np.testing.assert_array_equal(streamed[str(level)][...], two_pass[str(level)][...], f"level {level}")
    np.testing.assert_array_equal(streamed["0"][...], a)


def cli(*args: str) -> dict[str, Any]:
    """Run the imagelib CLI in a fresh process; its JSON output."""
    cmd = [sys.executable, "-c", "from imagelib.cli import app; app()", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_ingest_tiles_dzi_equals_tile_afterwards(lib: Path, tmp_path: Path) -> None:
    height, width = 700, 1021  # neither a multiple of the tile size
    path = geotiff(tmp_path / "src.tif", raster(3, height, width, seed=9), tiled=True)
    first = cli("ingest", str(path), "--namespace", "layouts", "--dataset", "cut-rgb", "--tiles", "dzi",
                "--out", str(tmp_path / "during"))  # fmt: skip
    assert first["tiles"]["levels"] == math.ceil(math.log2(max(height, width))) + 1
    second = tile_version(first["version"], "dzi", tmp_path / "after")
    during, later = tree(tmp_path / "during"), tree(tmp_path / "after")
    assert sum(k.endswith(".jpg") for k in later) == second["tiles"] == first["tiles"]["tiles"] > 5
    assert during == later


def test_api_ingest_tiles_uint16_png_equals_cli_tile_afterwards(lib: Path, tmp_path: Path) -> None:
    path = geotiff(tmp_path / "src.tif", raster(1, 389, 600, "uint16", seed=4), tiled=True)
    request = TileRequest(tmp_path / "during", fmt="png", tile_size=128, overlap=2)
    first = imagelib.ingest(path, "layouts", "cut-u16", tiles=request)
    options = ["--format", "png", "--tile-size", "128", "--overlap", "2"]
    second = cli("tile", first["version"], "--out", str(tmp_path / "after"), "--scheme", "dzi", *options)
    during, later = tree(tmp_path / "during"), tree(tmp_path / "after")
    assert sum(k.endswith(".png") for k in later) == second["tiles"] == first["tiles"]["tiles"] > 5
    assert during == later


def test_bad_tile_options_fail_before_anything_is_stored(lib: Path, tmp_path: Path) -> None:
    path = geotiff(tmp_path / "small.tif", raster(1, 50, 60))
    for request, field in [
        ("mbtiles", "tiles"),
        (TileRequest(tmp_path, fmt="gif"), "format"),
        (TileRequest(tmp_path, tile_size=8, overlap=8), "tile_size"),
    ]:
        with pytest.raises(UsageError) as caught:
            imagelib.ingest(path, "layouts", "never", tiles=request)
        assert caught.value.to_dict()["field"] == field
    assert imagelib.versions("layouts", "never") == []
    assert not any(tmp_path.glob("*.dzi"))


def test_cli_ingest_tiles_xyz_equals_tile_afterwards(lib: Path, tmp_path: Path) -> None:
    """``ingest --tiles xyz`` writes PNG WebMercatorQuad tiles byte-identical to ``imagelib tile --scheme
    xyz`` of the stored version, in one process."""
    path = geotiff(tmp_path / "geo.tif", raster(3, 600, 900, seed=11), tiled=True)
    first = cli("ingest", str(path), "--namespace", "layouts", "--dataset", "cut-xyz", "--tiles", "xyz",
                "--out", str(tmp_path / "during"))  # fmt: skip
    second = tile_version(first["version"], "xyz", tmp_path / "after")
    during, later = tree(tmp_path / "during"), tree(tmp_path / "after")
    assert first["tiles"]["scheme"] == "xyz" and first["tiles"]["format"] == "png"
    assert sum(k.endswith(".png") for k in later) == second["tiles"] == first["tiles"]["tiles"] > 3
    assert during == later


def test_ingest_tiles_xyz_of_a_plain_image_fails_before_anything_is_stored(lib: Path, tmp_path: Path) -> None:
    """No CRS: NOT_GEOREFERENCED before a byte is stored or a tile written; the version is not created."""
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, raster(1, 40, 50))
    with pytest.raises(ImagelibError) as caught:
        imagelib.ingest(path, "layouts", "plain-xyz", tiles=TileRequest(tmp_path / "out", scheme="xyz"))
    assert caught.value.code == "NOT_GEOREFERENCED" and caught.value.to_dict()["field"] == "tiles"
    assert imagelib.versions("layouts", "plain-xyz") == []
    assert not (tmp_path / "out").exists()
