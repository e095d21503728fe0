"""Start-up of the tile paths: ``imagelib tile`` (CLI) and a tile server's renderer load neither Dask, xarray
nor pandas (about 0.7 s of imports together), and a CLI export from a local store with a SQLite catalog
loads neither zarr-python, fsspec nor SQLAlchemy (~0.5 s more): a DZI export of a small image pays only
for what it uses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

HEAVY = ("dask", "xarray", "pandas")
#: not needed to read a plain local pyramid (imagelib.zarr_local, Blosc through imagecodecs) found through
#: a SQLite catalog (imagelib.catalog_read)
LOCAL_ONLY = ("zarr", "numcodecs", "fsspec", "sqlalchemy")


def imported(stderr: str) -> set[str]:
    """Top-level package names from ``python -X importtime`` output."""
    return {m.split(".")[0] for m in re.findall(r"^import time:.*\|\s*(\S+)\s*$", stderr, re.M)}


def test_tile_export_imports_no_dask_xarray_pandas_zarr_fsspec_sqlalchemy(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "small.tif"
    tifffile.imwrite(source, np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    env = {**os.environ, "IMAGELIB_HOME": str(home)}
    ingest = [sys.executable, "-m", "imagelib", "ingest", str(source), "--namespace", "t", "--dataset", "s"]
    done = subprocess.run([*ingest, "--json"], env=env, capture_output=True, text=True, check=True)
    version = json.loads(done.stdout)["version"]
    out = tmp_path / "dzi"
    tile = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "imagelib",
        "tile",
        version,
        "--out",
        str(out),
        "--json",
    ]
    done = subprocess.run(tile, env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["tiles"] == len(list(out.rglob("*.jpg"))) > 0
    modules = imported(done.stderr)
    assert {"imagelib", "numpy", "imagecodecs"} <= modules  # the parse sees the imports
    assert not modules & set(HEAVY + LOCAL_ONLY), sorted(modules & set(HEAVY + LOCAL_ONLY))
    # nor, without a chain, the filters package (its op registry and schema: ~0.1 s)
    names = re.findall(r"^import time:.*\|\s*(\S+)\s*$", done.stderr, re.M)
    assert not [n for n in names if n.startswith("imagelib.filters")]


def test_geotiff_ingest_imports_no_zarr(home: Path, tmp_path: Path) -> None:
    """A local ingest of a GeoTIFF into a new library writes its pyramid with imagelib.zarr_local and reads
    with rasterio: zarr-python (~0.15 s of start-up, and an I/O thread that stops the tile cut from
    forking), numcodecs (imagecodecs writes the same Blosc frames), fsspec, h5py and Alembic (the new SQLite
    catalog is created at head) stay out."""
    import rasterio
    from rasterio.transform import from_origin

    source = tmp_path / "geo.tif"
    profile = {"driver": "GTiff", "width": 300, "height": 200, "count": 1, "dtype": "uint8"}
    with rasterio.open(
        source, "w", **profile, crs="EPSG:32633", transform=from_origin(5e5, 5e6, 10, 10)
    ) as dst:
        dst.write(np.random.default_rng(2).integers(0, 255, (200, 300), dtype=np.uint8), 1)
    env = {**os.environ, "IMAGELIB_HOME": str(home)}
    cmd = [sys.executable, "-X", "importtime", "-m", "imagelib", "ingest", str(source), "--json"]
    done = subprocess.run(
        [*cmd, "--namespace", "t", "--dataset", "g"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["version"]
    modules = imported(done.stderr)
    assert {"imagelib", "rasterio", "imagecodecs"} <= modules  # chunks compressed by zarr_local.Blosc
    assert not {"zarr", "numcodecs", "fsspec", "h5py", "alembic"} & modules
