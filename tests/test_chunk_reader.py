"""ChunkReader (tile paths' chunk reads straight from local Zarr v2 chunk files) against zarr-python's own
reads: every chunk, edge chunks cut, missing chunks as the fill value, leading axes with chunks > 1, and
the zarr-python fallback for other stores."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import zarr

from imagelib.multiscale import ChunkReader, compressor

RNG = np.random.default_rng(5)


def make(
    store: object, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str, fill: float = 0
) -> zarr.Array:
    arr = zarr.create_array(
        store,
        name="0",
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        zarr_format=2,
        compressors=compressor(),
        fill_value=fill,
        chunk_key_encoding={"name": "v2", "separator": "."},
    )
    data = (RNG.random(shape) * 1000).astype(dtype)
    arr[...] = data
    return arr


def every_chunk(arr: zarr.Array, yaxis: int, xaxis: int):
    lead_axes = [a for a in range(arr.ndim) if a not in (yaxis, xaxis)]
    grids = [range(-(-arr.shape[a] // arr.chunks[a])) for a in (yaxis, xaxis)]
    for leads in itertools.product(*(range(arr.shape[a]) for a in lead_axes)):
        for cy, cx in itertools.product(*grids):
            yield tuple(zip(lead_axes, leads, strict=True)), cy, cx


def reference(arr: zarr.Array, lead, yaxis: int, xaxis: int, cy: int, cx: int) -> np.ndarray:
    region: list = [slice(None)] * arr.ndim
    ch, cw = arr.chunks[yaxis], arr.chunks[xaxis]
    region[yaxis], region[xaxis] = slice(cy * ch, (cy + 1) * ch), slice(cx * cw, (cx + 1) * cw)
    for axis, i in lead:
        region[axis] = i
    return arr[tuple(region)]


@pytest.mark.parametrize(
    ("shape", "chunks", "dtype"),
    [
        ((3, 700, 530), (1, 256, 256), "uint8"),  # bands, edge chunks on both axes
        ((1, 300, 300), (1, 128, 128), "uint16"),
        ((7, 90, 100), (3, 64, 64), "float32"),  # a volume whose z chunks hold 3 slices
    ],
)
def test_every_chunk_equals_zarr(tmp_path: Path, shape: tuple, chunks: tuple, dtype: str) -> None:
    arr = make(zarr.storage.LocalStore(tmp_path / "a.zarr"), shape, chunks, dtype)
    reader = ChunkReader(arr)
    assert reader.folder is not None  # the file path is the one under test
    for lead, cy, cx in every_chunk(arr, 1, 2):
        got, want = reader.read(lead, 1, 2, cy, cx), reference(arr, lead, 1, 2, cy, cx)
        assert got.dtype == want.dtype and np.array_equal(got, want), (lead, cy, cx)


def test_missing_chunk_is_the_fill_value(tmp_path: Path) -> None:
    arr = make(zarr.storage.LocalStore(tmp_path / "a.zarr"), (1, 300, 200), (1, 128, 128), "float32", fill=-9)
    (tmp_path / "a.zarr" / "0" / "0.2.1").unlink()  # the bottom-right edge chunk
    got = ChunkReader(arr).read(((0, 0),), 1, 2, 2, 1)
    assert got.shape == (300 - 256, 200 - 128) and np.all(got == -9)
    assert np.array_equal(got, reference(arr, ((0, 0),), 1, 2, 2, 1))


def test_other_stores_go_through_zarr() -> None:
    arr = make(zarr.storage.MemoryStore(), (2, 200, 150), (1, 64, 64), "uint8")
    reader = ChunkReader(arr)
    assert reader.folder is None
    for lead, cy, cx in every_chunk(arr, 1, 2):
        assert np.array_equal(reader.read(lead, 1, 2, cy, cx), reference(arr, lead, 1, 2, cy, cx))
