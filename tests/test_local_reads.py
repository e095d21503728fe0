"""The tile path's light readers against the libraries they stand in for: a stored pyramid opened by
``imagelib.zarr_local`` gives zarr-python's metadata and chunks; ``LocalStore`` finds fsspec's root
without fsspec; ``imagelib.catalog_read`` answers what SQLAlchemy's catalog answers, or nothing."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr

import imagelib
from imagelib.catalog import Catalog
from imagelib.catalog_read import sqlite_path, storage_url
from imagelib.context import Library, connect
from imagelib.errors import NotFound
from imagelib.multiscale import ChunkReader
from imagelib.storage import LocalStore
from imagelib.stored import open_group, open_levels
from imagelib.zarr_local import LocalArray, LocalGroup, open_local_group


def ingested(
    home: Path, tmp_path: Path, shape: tuple[int, ...] = (3, 1300, 1100), dtype: str = "uint8"
) -> str:
    """A version of random pixels (edge chunks on both axes; several stored levels)."""
    import tifffile

    data = (np.random.default_rng(3).random(shape) * 200).astype(dtype)
    source = tmp_path / "src.tif"
    tifffile.imwrite(
        source,
        np.moveaxis(data, 0, -1) if shape[0] == 3 else data,
        photometric="rgb" if shape[0] == 3 else None,
    )
    return imagelib.ingest(source, "t", "s")["version"]


def test_local_group_has_zarrs_metadata_and_chunks(home: Path, tmp_path: Path) -> None:
    version = ingested(home, tmp_path)
    group, _ = open_group(version)
    light, _ = open_levels(version)
    assert isinstance(light, LocalGroup)
    assert light.attrs == group.attrs.asdict()
    paths = [d["path"] for d in group.attrs["multiscales"][0]["datasets"]]
    assert len(paths) >= 3
    for path in paths:
        heavy, lite = group[path], light[path]
        assert isinstance(lite, LocalArray)
        assert (lite.shape, lite.chunks, lite.dtype) == (heavy.shape, heavy.chunks, heavy.dtype)
        fast, slow = ChunkReader(lite), ChunkReader(heavy)
        assert fast.folder == slow.folder is not None
        grid = [range(-(-heavy.shape[a] // heavy.chunks[a])) for a in (1, 2)]
        for band, (cy, cx) in itertools.product(range(heavy.shape[0]), itertools.product(*grid)):
            got, want = fast.read(((0, band),), 1, 2, cy, cx), slow.read(((0, band),), 1, 2, cy, cx)
            assert got.dtype == want.dtype and np.array_equal(got, want), (path, band, cy, cx)
        np.testing.assert_array_equal(lite[1, 5:40, 7:90], heavy[1, 5:40, 7:90])  # zarr-python fallback


def test_missing_chunk_is_the_fill_value(home: Path, tmp_path: Path) -> None:
    version = ingested(home, tmp_path)
    light, _ = open_levels(version)
    (light.folder / "0" / "0.1.1").unlink()
    got = ChunkReader(light["0"]).read(((0, 0),), 1, 2, 1, 1)
    assert got.shape == (1300 - 1024, 1100 - 1024) and not got.any()  # fill value 0, cut at the edge


@pytest.mark.parametrize(
    "change",
    [
        {"filters": [{"id": "delta", "dtype": "<u1"}]},
        {"order": "F"},
        {"dimension_separator": "/"},
        {"dtype": ">u2"},
        {"zarr_format": 3},
    ],
)
def test_any_other_layout_is_left_to_zarr(home: Path, tmp_path: Path, change: dict) -> None:
    """A level that is not the plain layout makes the whole group go through zarr-python (None here)."""
    version = ingested(home, tmp_path)
    light, _ = open_levels(version)
    meta_file = light.folder / "1" / ".zarray"
    meta = json.loads(meta_file.read_text())
    assert open_local_group(light.folder) is not None
    meta_file.write_text(json.dumps({**meta, **change}))
    assert open_local_group(light.folder) is None


def test_broken_metadata_is_left_to_zarr(home: Path, tmp_path: Path) -> None:
    version = ingested(home, tmp_path)
    light, _ = open_levels(version)
    (light.folder / ".zattrs").write_text("{not json")
    assert open_local_group(light.folder) is None
    (light.folder / ".zattrs").unlink()
    assert open_local_group(light.folder) is None
    assert open_local_group(tmp_path / "nowhere") is None


def test_float_pyramid_with_nan_fill_reads_like_zarr(home: Path, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    data = np.random.default_rng(4).random((300, 200)).astype("float32")
    data[:10] = np.nan
    source = tmp_path / "f.tif"
    profile = {
        "driver": "GTiff",
        "width": 200,
        "height": 300,
        "count": 1,
        "dtype": "float32",
        "nodata": np.nan,
    }
    with rasterio.open(source, "w", **profile, transform=from_origin(0, 0, 1, 1)) as dst:
        dst.write(data, 1)
    version = imagelib.ingest(source, "t", "f")["version"]
    group, _ = open_group(version)
    light, _ = open_levels(version)
    for path in ("0", "1"):
        got = ChunkReader(light[path]).read(((0, 0),), 1, 2, 0, 0)
        want = ChunkReader(group[path]).read(((0, 0),), 1, 2, 0, 0)
        np.testing.assert_array_equal(got, want)  # NaN where NaN
        assert np.isnan(got[0, 0])
    (light.folder / "0" / "0.0.0").unlink()  # never written: zarr-python gives the fill value (nodata)
    got = ChunkReader(light["0"]).read(((0, 0),), 1, 2, 0, 0)
    np.testing.assert_array_equal(got, group["0"][0])
    assert np.isnan(got).all()


@pytest.mark.parametrize("form", ["file://{p}", "{p}", "file://{p}/", "{p}/../store"])
def test_local_store_root_is_fsspecs(tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same folder as fsspec's (this one is also normalised: no ``.``/``..`` parts)."""
    url = form.format(p=tmp_path / "store")
    root = LocalStore(url).root
    assert root == os.path.normpath(root) and os.path.isabs(root)
    assert os.path.samefile(root, fsspec.core.url_to_fs(url)[1])
    monkeypatch.chdir(tmp_path)
    assert LocalStore("rel/store").root == fsspec.core.url_to_fs("rel/store")[1]
    assert LocalStore("~/x").root == fsspec.core.url_to_fs("~/x")[1]
    assert LocalStore("rel/store").fs.exists(str(tmp_path / "rel" / "store"))  # fsspec on first use


def test_catalog_read_answers_what_the_catalog_does(home: Path, tmp_path: Path) -> None:
    version = ingested(home, tmp_path)
    url = f"sqlite:///{home}/catalog.db"
    assert storage_url(url, version) == Catalog(url).get_version(version)["storage_url"]
    assert storage_url(url, "0" * 32) is None  # the full catalog raises the coded NotFound
    with pytest.raises(NotFound):
        Library().storage_url("0" * 32)


def test_catalog_read_declines_what_it_cannot_answer(home: Path, tmp_path: Path) -> None:
    version = ingested(home, tmp_path)
    db = home / "catalog.db"
    url = f"sqlite:///{db}"
    assert storage_url("postgresql://u@127.0.0.1/x", version) is None
    assert storage_url("sqlite://", version) is None
    assert storage_url(f"{url}?mode=ro", version) is None
    assert storage_url(f"sqlite:///{tmp_path}/absent.db", version) is None
    assert not (tmp_path / "absent.db").exists()  # read-only: nothing created
    with sqlite3.connect(db) as conn:  # a schema behind the code's: the Catalog migrates it first
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert storage_url(url, version) is None
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
    assert storage_url(url, version) is not None
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    assert storage_url(f"sqlite:///{junk}", version) is None


def test_sqlite_path_forms() -> None:
    assert sqlite_path("sqlite:////abs/c.db") == Path("/abs/c.db")
    assert sqlite_path("sqlite:///rel/c.db") == Path("rel/c.db")
    assert sqlite_path("sqlite+pysqlite:////abs/c.db") == Path("/abs/c.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql+psycopg://h/db") is None


def test_tile_export_never_opens_the_catalog_or_zarr(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcuts are what the export uses: a context that exports leaves its catalog unopened and
    reads a LocalGroup, and its tiles equal those of a context whose catalog is open (SQLAlchemy) and
    whose group is zarr-python's."""
    import imagelib.zarr_local
    from imagelib.tiling.export import tile_version

    version = ingested(home, tmp_path)
    fast = connect(home)
    opened: list[object] = []
    real = imagelib.zarr_local.open_local_group
    monkeypatch.setattr(
        imagelib.zarr_local, "open_local_group", lambda f: opened.append(real(f)) or opened[-1]
    )
    tile_version(version, "dzi", tmp_path / "a", lib=fast)
    assert fast._catalog is None and isinstance(opened[0], LocalGroup)
    monkeypatch.setattr(imagelib.zarr_local, "open_local_group", lambda f: None)  # zarr-python's group
    slow = connect(home)
    slow.catalog.get_version(version)  # opened: the context asks SQLAlchemy from here on
    assert slow.storage_url(version) == fast.storage_url(version)
    tile_version(version, "dzi", tmp_path / "b", lib=slow)
    assert isinstance(open_levels(version, lib=slow)[0], zarr.Group)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert len(files) > 20
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_written_without_zarr_python_and_read_by_it(home: Path, tmp_path: Path) -> None:
    """A local ingest writes its group with imagelib.zarr_local: zarr-python opens it, with the same
    metadata and pixels the light reader gives, for any selection the light reader answers itself."""
    version = ingested(home, tmp_path)
    group, _ = open_group(version)  # zarr-python
    light = open_local_group(home / "store" / "versions" / version / "image.zarr")
    assert isinstance(group, zarr.Group) and light is not None
    assert len(light) == len(list(group.array_keys())) >= 3
    arr = group["0"]
    assert (arr.chunks, arr.dtype, arr.fill_value) == ((1, 1024, 1024), np.uint8, 0)
    assert arr.metadata.compressor.get_config()["cname"] == "lz4"
    for region in [..., 1, (2, slice(1000, 1100)), (slice(None), 1023, slice(1020, 1030)), (-1, ..., -5)]:
        np.testing.assert_array_equal(light["0"][region], arr[region], err_msg=str(region))
    np.testing.assert_array_equal(light["0"][::2, 5], arr[::2, 5])  # a step: through zarr-python


def test_local_attrs_are_saved_whole(tmp_path: Path) -> None:
    from imagelib.zarr_local import create_group

    spec = {"shape": (2, 3), "chunks": (2, 2), "dtype": "<f4", "fill_value": float("nan"), "compressor": None}
    group = create_group(tmp_path / "g.zarr", {"0": spec}, {"a": 1})
    group.attrs["b"] = [1, 2]
    assert dict(zarr.open_group(str(tmp_path / "g.zarr"), mode="r").attrs) == {"a": 1, "b": [1, 2]}
    assert [p.name for p in (tmp_path / "g.zarr").iterdir() if p.name.endswith(".part")] == []
    heavy = zarr.open_array(str(tmp_path / "g.zarr" / "0"), mode="r")
    assert np.isnan(heavy.fill_value) and np.isnan(group["0"][...]).all()  # never written: the fill


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
@pytest.mark.parametrize("shuffle", [0, 1, 2])
@pytest.mark.parametrize("cname", ["lz4", "lz4hc", "blosclz", "zstd", "zlib"])  # all Blosc.handles
def test_blosc_frames_are_numcodecs_frames(dtype: str, shuffle: int, cname: str) -> None:
    """zarr_local's Blosc (imagecodecs) and numcodecs' Blosc read each other's chunks, smooth and noisy,
    for every shuffle and every compressor it takes; configs it does not write exactly as numcodecs
    (auto shuffle, other codecs) are numcodecs' own codec."""
    import numcodecs

    from imagelib.zarr_local import Blosc, codec

    config = {"id": "blosc", "cname": cname, "clevel": 5, "shuffle": shuffle, "blocksize": 0}
    ours, theirs = codec(config), numcodecs.get_codec(dict(config))
    assert isinstance(ours, Blosc)
    rng = np.random.default_rng(shuffle)
    smooth = (np.add.outer(np.arange(300), np.arange(200)) % 250).astype(dtype)
    for block in (smooth, (rng.random((300, 200)) * 200).astype(dtype)):
        for encoded, decode in ((ours.encode(block), theirs.decode), (theirs.encode(block), ours.decode)):
            assert np.array_equal(np.frombuffer(decode(encoded), dtype).reshape(block.shape), block)
    assert len(ours.encode(smooth)) < smooth.nbytes // 4  # it does compress
    # the frame header's flags (shuffle, memcpy) and type size: the same choices numcodecs makes
    assert bytes(ours.encode(smooth))[2:4] == bytes(theirs.encode(smooth))[2:4]
    assert not isinstance(codec({**config, "shuffle": -1}), Blosc)
    assert not isinstance(codec({"id": "zstd", "level": 3}), Blosc) and codec(None) is None
