"""The OME-Zarr multiscale: level geometry, nodata-aware downsampling, streaming == two-pass build."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from imagelib import multiscale
from imagelib.multiscale import downsample2
from imagelib.validation.content import read_through


def independent_mean(a: np.ndarray) -> np.ndarray:
    """2×2 block mean with edge replication, written directly (reference for downsample2)."""
    h, w = a.shape[-2:]
    p = np.pad(a.astype("float64"), [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    return (p[..., ::2, ::2] + p[..., 1::2, ::2] + p[..., ::2, 1::2] + p[..., 1::2, 1::2]) / 4


def test_level_shapes_halve_with_ceil_until_256() -> None:
    shapes = multiscale.level_shapes((3, 1000, 777))
    assert shapes == [(3, 1000, 777), (3, 500, 389), (3, 250, 195)]
    assert multiscale.level_shapes((5, 4097, 3)) == [
        (5, 4097, 3),
        (5, 2049, 2),
        (5, 1025, 1),
        (5, 513, 1),
        (5, 257, 1),
        (5, 129, 1),
    ]


def test_downsample_matches_independent_mean_and_rounds_ints() -> None:
    rng = np.random.default_rng(0)
    floats = rng.normal(size=(2, 7, 9)).astype("float32")
    np.testing.assert_allclose(multiscale.downsample2(floats), independent_mean(floats), rtol=1e-6)
    ints = rng.integers(0, 65535, (5, 6), dtype=np.uint16)
    expected = np.floor(independent_mean(ints) + 0.5).astype(np.uint16)
    np.testing.assert_array_equal(multiscale.downsample2(ints), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("shape", [(3, 1024, 1030), (1025, 1024), (2, 1, 1024, 2048)])
def test_large_integer_blocks_round_half_up_exactly(dtype: type, shape: tuple[int, ...]) -> None:
    """Blocks of ≥ 1 MP a plane take OpenCV's area mean (``multiscale.OPENCV_MIN_PIXELS``): the same integers
    as ``floor(mean + 0.5)``, extremes and odd edges included."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    block = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    block[..., :4, :6] = info.max  # sums that overflow the dtype
    block[..., 4:8, :6] = info.min
    block[..., 8:10, :2] = np.array([[info.min, info.max], [info.max, info.min]], dtype)  # exact halves
    assert block.shape[-1] * block.shape[-2] >= multiscale.OPENCV_MIN_PIXELS
    expected = np.floor(independent_mean(block) + 0.5).astype(dtype)
    np.testing.assert_array_equal(multiscale.downsample2(block), expected)


def test_downsample_ignores_nodata_and_nan() -> None:
    block = np.array([[0, 10], [20, 0]], dtype=np.uint8)
    assert multiscale.downsample2(block, nodata=0)[0, 0] == 15
    assert multiscale.downsample2(np.zeros((2, 2), np.uint8), nodata=0)[0, 0] == 0
    floats = np.array([[np.nan, 1.0], [3.0, np.nan]], dtype="float32")
    assert multiscale.downsample2(floats)[0, 0] == 2.0
    assert np.isnan(multiscale.downsample2(np.full((2, 2), np.nan, "float32"))[0, 0])


@pytest.mark.parametrize("shape", [(3, 2500, 1300), (3000, 777), (1, 1025, 4097), (2, 2049, 2049)])
def test_streaming_pyramid_equals_two_pass_build(
    shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    import imagelib.validation.content as content

    monkeypatch.setattr(content, "BLOCK_BYTES", 1)  # force one 1024-row strip per block
    a = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    dims = ("band", "y", "x") if len(shape) == 3 else ("y", "x")
    data = xr.DataArray(da.from_array(a, chunks=(1024,) * len(shape)), dims=dims, attrs={"nodata": 0})
    streamed = multiscale.create(zarr.storage.MemoryStore(), data, {})
    blocks: list[tuple[slice, ...]] = []
    with multiscale.PyramidWriter(streamed, dims, nodata=0) as writer:

        def write(index: tuple[slice, ...], block: np.ndarray) -> None:
            blocks.append(index)
            writer.write(index, block)

        read_through(data, on_block=write)
        writer.close()
    # one block per 1024-row strip: the streaming path is really exercised
    assert len(blocks) == -(-shape[-2] // 1024)
    two_pass = multiscale.create(zarr.storage.MemoryStore(), data, {})
    two_pass["0"][...] = a
    multiscale.build_lower_levels(two_pass, nodata=0)
    assert len(streamed) == len(two_pass) > 1
    for level in range(len(streamed)):
        np.testing.assert_array_equal(streamed[str(level)][...], two_pass[str(level)][...])
    np.testing.assert_array_equal(streamed["0"][...], a)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_direct_chunk_writer_on_disk_reads_back_through_zarr(tmp_path, dtype: str) -> None:
    shape = (2, 2100, 1500)  # edge chunks in y and x
    a = np.random.default_rng(2).normal(100, 30, shape).astype(dtype)
    data = xr.DataArray(da.from_array(a, chunks=(2, 1024, 1500)), dims=("band", "y", "x"), attrs={})
    group = multiscale.create(zarr.storage.LocalStore(tmp_path / "img.zarr"), data, {})
    with multiscale.PyramidWriter(group, data.dims) as writer:
        assert writer.writers[0].folder is not None  # the fast path is the one under test
        read_through(data, on_block=writer.write)
        writer.close()
    reopened = zarr.open_group(tmp_path / "img.zarr", mode="r")
    np.testing.assert_array_equal(reopened["0"][...], a)
    np.testing.assert_array_equal(reopened["1"][...], multiscale.downsample2(a))


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
@pytest.mark.parametrize("with_nodata", [False, True])
def test_downsample_is_exact_for_64_bit_integers(dtype: str, with_nodata: bool) -> None:
    """64-bit integers: no overflow (a sum of four does not fit) and no float64 rounding (above 2^53):
    every output equals floor(mean + 1/2) computed with Python integers."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    edge = np.array([info.min, info.max, info.max - 1, info.min + 1, 2**60 + 1, 2**60 + 2], dtype=dtype)
    block = rng.choice(edge, size=(32, 32)).astype(dtype)
    nodata = int(edge[2]) if with_nodata else None
    out = downsample2(block, nodata)
    for (i, j), got in np.ndenumerate(out):
        window = [int(v) for v in block[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()]
        valid = [v for v in window if nodata is None or v != nodata]
        expected = nodata if not valid else (2 * sum(valid) + len(valid)) // (2 * len(valid))
        assert int(got) == expected, (i, j, window)


def test_uint64_images_ingest_with_levels(home: Path, tmp_path: Path) -> None:
    """A uint64 image larger than one level ingests (it crashed with an uncoded TypeError) and its level 1
    holds the exact rounded means."""
    import tifffile

    import imagelib

    data = np.random.default_rng(3).integers(2**63, 2**64 - 1, (600, 600), dtype=np.uint64, endpoint=True)
    tifffile.imwrite(tmp_path / "u64.tif", data)
    version = imagelib.ingest(tmp_path / "u64.tif", "ns", "u64")["version"]
    level1 = imagelib.open(version, level=1).values
    quads = [data[a::2, b::2].astype(object) for a in (0, 1) for b in (0, 1)]
    expected = ((sum(quads) + 2) // 4).astype(np.uint64)
    np.testing.assert_array_equal(level1, expected)
