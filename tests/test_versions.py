"""Versioning, catalog and atomicity: dedupe, lineage, search, SIGKILL mid-ingest, concurrent ingests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

import imagelib
from imagelib.catalog import Catalog
from imagelib.hashing import file_sha256
from imagelib.versioning import derived_version_id, root_version_id
from tests.conftest import DATA


def store_files(home: Path) -> list[str]:
    root = home / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def write_geotiff(path: Path, size: int, seed: int = 0, bands: int = 3) -> Path:
    """A synthetic georeferenced uint8 GeoTIFF (striped, uncompressed)."""
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 5000000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            h = min(512, size - row)
            block = rng.integers(0, 255, (bands, h, size), dtype=np.uint8)
            dst.write(block, window=rasterio.windows.Window(0, row, size, h))
    return path


def test_ids_are_content_addressed() -> None:
    digest = file_sha256(DATA / "byte.tif")
    assert root_version_id(digest) == root_version_id(digest.upper())
    assert root_version_id(digest, "/a") != root_version_id(digest, "/b") != root_version_id(digest)
    chain = {"op": "filter", "chain": [{"op": "gaussian", "sigma": 1}]}
    parent = root_version_id(digest)
    assert derived_version_id([parent], chain) == derived_version_id([parent], json.loads(json.dumps(chain)))
    assert derived_version_id([parent], chain) != derived_version_id([parent], {"op": "filter", "chain": []})


def test_reingest_same_bytes_stores_nothing_new(catalog_env: str, home: Path, tmp_path: Path) -> None:
    first = imagelib.ingest(DATA / "RGB.byte.tif", "ns", "rgb")
    files = store_files(home)
    renamed = tmp_path / "copy-of-rgb.tif"
    renamed.write_bytes((DATA / "RGB.byte.tif").read_bytes())
    again = imagelib.ingest(renamed, "ns", "rgb")
    assert again["version"] == first["version"] and again["deduplicated"] is True
    assert store_files(home) == files
    assert len(imagelib.versions("ns", "rgb")) == 1
    other = imagelib.ingest(DATA / "RGB.byte.tif", "ns", "elsewhere")  # same bytes, another dataset
    assert other["version"] == first["version"]
    assert store_files(home) == files
    assert Catalog().get_version(first["version"])["datasets"] == ["ns/elsewhere", "ns/rgb"]


def test_addresses_in_one_file_are_distinct_versions(catalog_env: str) -> None:
    a = imagelib.ingest(f"{DATA}/two-subs.h5#/data", "ns", "h5")
    b = imagelib.ingest(f"{DATA}/two-subs.h5#/data2", "ns", "h5")
    assert a["version"] != b["version"] and a["checksum"] == b["checksum"]
    assert [v["address"] for v in imagelib.versions("ns", "h5")] == ["/data", "/data2"]


def test_lineage_dag_and_idempotent_derivation(catalog_env: str) -> None:
    root = imagelib.ingest(DATA / "shade.tif", "ns", "shade")["version"]
    smooth = imagelib.apply(root, [{"op": "gaussian", "sigma": 2}])
    assert imagelib.apply(root, [{"sigma": 2, "op": "gaussian"}]) == smooth  # canonical chain ⇒ same ID
    sharper = imagelib.apply(smooth, [{"op": "median", "size": 3}])
    down = imagelib.lineage(root)["descendants"]
    assert [d["version"] for d in down] == [smooth, sharper]
    up = imagelib.lineage(sharper)["ancestors"]
    assert [a["version"] for a in up] == [smooth, root]
    assert up[0]["operation"]["chain"][0]["op"] == "median"
    from scipy import ndimage

    source = imagelib.open(root).values.astype("float32")
    expected = ndimage.gaussian_filter(source[0], 2, mode="reflect")
    np.testing.assert_allclose(imagelib.open(smooth).values[0], expected, rtol=1e-5, atol=1e-3)


def test_search_by_bbox_time_namespace_dtype(catalog_env: str) -> None:
    rgb = imagelib.ingest(DATA / "RGB.byte.tif", "landsat", "rgb")["version"]
    world = imagelib.ingest(DATA / "world.rgb.tif", "global", "world")["version"]
    cth = imagelib.ingest(f"{DATA}/20171025_2056.Cloud_Top_Height.nc#/HT", "goes", "cth")["version"]
    near_bahamas = (-78.5, 24.0, -76.0, 25.5)
    assert {v["version"] for v in imagelib.search(bbox=near_bahamas)} == {rgb, world, cth}
    assert {v["version"] for v in imagelib.search(bbox=near_bahamas, namespace="landsat")} == {rgb}
    assert {v["version"] for v in imagelib.search(bbox=(100, -10, 120, 10))} == {world}
    october = (datetime(2017, 10, 25, tzinfo=UTC), datetime(2017, 10, 26, tzinfo=UTC))
    assert {v["version"] for v in imagelib.search(time=october)} == {cth}
    assert {v["version"] for v in imagelib.search(dtype="uint16")} == {cth}


def _ingest_cmd(path: Path, dataset: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "imagelib",
        "ingest",
        str(path),
        "--namespace",
        "ns",
        "--dataset",
        dataset,
        "--json",
    ]


def test_sigkill_mid_ingest_leaves_nothing_then_rerun_succeeds(
    catalog_env: str, home: Path, tmp_path: Path
) -> None:
    big = write_geotiff(tmp_path / "big.tif", 6144)
    proc = subprocess.Popen(
        _ingest_cmd(big, "killed"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ
    )
    level0 = None
    deadline = time.monotonic() + 120
    while level0 is None and time.monotonic() < deadline and proc.poll() is None:
        chunks = list((home / "store" / "staging").glob("*/image.zarr/0/[0-9]*"))
        level0 = chunks[0] if len(chunks) > 3 else None  # part-way: some level-0 chunks written
        time.sleep(0.02)
    assert level0 is not None and proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (home / "store" / "versions").exists() or not list((home / "store" / "versions").iterdir())
    counts = Catalog().counts()
    assert counts["versions"] == counts["dataset_versions"] == counts["lineage"] == 0
    done = subprocess.run(_ingest_cmd(big, "killed"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    version = json.loads(done.stdout)["version"]
    assert (home / "store" / "versions" / version / "_PUBLISHED").exists()
    np.testing.assert_array_equal(
        imagelib.open(version, level=0)[:, :512, :512].values,
        rasterio.open(big).read(window=((0, 512), (0, 512))),
    )
    gc = subprocess.run(
        [sys.executable, "-m", "imagelib", "gc", "--json"], capture_output=True, text=True, timeout=60
    )
    assert json.loads(gc.stdout)["removed_staging"] == 1  # the killed run's staging prefix


def test_concurrent_processes_same_file_one_version(catalog_env: str, home: Path, tmp_path: Path) -> None:
    src = write_geotiff(tmp_path / "same.tif", 1500, seed=3)
    procs = [
        subprocess.Popen(_ingest_cmd(src, "race"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outs]
    ids = {json.loads(o[0])["version"] for o in outs}
    assert len(ids) == 1
    assert len(imagelib.versions("ns", "race")) == 1
    assert [p.name for p in (home / "store" / "versions").iterdir()] == list(ids)
    assert Catalog().counts()["versions"] == 1


def test_concurrent_processes_different_files_all_recorded(catalog_env: str, tmp_path: Path) -> None:
    paths = [write_geotiff(tmp_path / f"f{i}.tif", 300, seed=i) for i in range(4)]
    procs = [
        subprocess.Popen(_ingest_cmd(p, "many"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in paths
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert {v["version"] for v in imagelib.versions("ns", "many")} == {
        json.loads(o[0])["version"] for o in outs
    }
    counts = Catalog().counts()
    assert counts["versions"] == 4 and counts["namespaces"] == 1 and counts["datasets"] == 1


def test_s3_store_over_moto_server(s3_store: str, home: Path) -> None:
    result = imagelib.ingest(DATA / "RGBA.uint16.tif", "ns", "s3")
    assert result["storage_url"].startswith(s3_store)
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    prefix = s3_store[len("s3://") :]
    assert fs.exists(f"{prefix}/versions/{result['version']}/_PUBLISHED")
    assert not fs.exists(f"{prefix}/staging") or fs.ls(f"{prefix}/staging") == []
    stored = imagelib.open(result["version"], level=1)
    with rasterio.open(DATA / "RGBA.uint16.tif") as src:
        full = src.read()
    assert stored.shape == (4, (full.shape[1] + 1) // 2, (full.shape[2] + 1) // 2)
    np.testing.assert_array_equal(imagelib.open(result["version"]).values, full)
    assert imagelib.ingest(DATA / "RGBA.uint16.tif", "ns", "s3")["deduplicated"] is True
