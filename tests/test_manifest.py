"""Every sample file in shared/data/MANIFEST.json is validated and ingested as the manifest says.

Checked field by field: format, validity, shape, dtype, CRS (pyproj-equivalent), bounds, nodata (also
"none": then the reader must report none), sha256; and the stored level 0 holds exactly the pixels an
INDEPENDENT reader finds in the source (rasterio for GeoTIFF/COG, tifffile for TIFF/OME-TIFF, h5py for
HDF5/NetCDF4, zarr-python for Zarr), never imagelib's own readers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import rasterio
import tifffile
import zarr
from pyproj import CRS, Transformer

import imagelib
from imagelib.errors import ValidationFailed
from imagelib.validation import validate
from tests.conftest import DATA, MANIFEST, manifest_source

IDS = [e["file"] for e in MANIFEST]


def squeezed(shape: list[int]) -> list[int]:
    """The manifest allows a leading band axis of 1 to be squeezed."""
    out = list(shape)
    while len(out) > 2 and out[0] == 1:
        out.pop(0)
    return out


def same_crs(found: str | None, expected: str | None) -> bool:
    """Both absent, or the same CRS by pyproj (equal, or equivalent definitions written differently)."""
    if expected is None or found is None:
        return found is expected
    a, b = CRS.from_user_input(found), CRS.from_user_input(expected)
    if a.equals(b):
        return True
    # Equivalent definitions written differently (e.g. ellipsoid by semi-minor axis vs inverse flattening):
    # the same projected points must land within a millimetre-scale angle on the globe.
    to_a = Transformer.from_crs(a, "EPSG:4326", always_xy=True)
    to_b = Transformer.from_crs(b, "EPSG:4326", always_xy=True)
    points = [(0.0, 0.0), (1e5, 2e6), (-2e6, 3e6)]
    return all(np.allclose(to_a.transform(*p), to_b.transform(*p), atol=1e-7) for p in points)


def accepted_formats(entry: dict[str, Any]) -> set[str]:
    """The manifest's format; a plain ``zarr`` entry documented as OME-NGFF may be reported as its
    refinement ``ome-zarr`` (as the manifest itself separates cog/geotiff and ome-tiff/tiff)."""
    formats = {entry["format"]}
    if entry["format"] == "zarr" and "OME-NGFF" in entry.get("notes", ""):
        formats.add("ome-zarr")
    return formats


def check_nodata(found: Any, expected: Any) -> None:
    """Nodata as the manifest says: a number, ``"nan"``, or none at all (then the reader reports none)."""
    if expected is None:
        assert found is None, f"manifest says no nodata, reader reports {found!r}"
    elif expected == "nan":
        assert found is not None and math.isnan(float(found)), found
    else:
        assert found is not None and float(found) == pytest.approx(float(expected), rel=1e-7), found


def check_facts(entry: dict[str, Any], facts: dict[str, Any]) -> None:
    """Format, shape, dtype, CRS and bounds of a report's info / an ingest summary."""
    assert facts["format"] in accepted_formats(entry), (facts["format"], entry["format"])
    # singleton axes may be squeezed (leading band; NGFF t/z); the untouched source shape is kept too
    assert squeezed(facts["shape"]) == squeezed(entry["shape"]) or facts["source_shape"] == entry["shape"]
    assert facts["dtype"] in [entry["dtype"], *entry.get("dtype_alternatives", [])]
    assert same_crs(facts["crs"], entry["crs"]), (facts["crs"], entry["crs"])
    if entry["bounds"] is None:
        assert facts["bounds"] is None
    else:
        assert facts["bounds"] == pytest.approx(entry["bounds"], rel=1e-9, abs=1e-5)


def _address(entry: dict[str, Any]) -> str | None:
    address = entry.get("address")
    return address.split("#", 1)[1] if address else None


def independent_pixels(entry: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    """The source pixels read without imagelib, as ``dtype`` (a NetCDF variable CF-decoded to it)."""
    path = DATA / entry["file"].rstrip("/")
    fmt = entry["format"]
    if fmt in ("geotiff", "cog"):
        with rasterio.open(path) as ds:
            return ds.read()
    if fmt in ("tiff", "ome-tiff"):
        return tifffile.imread(path)
    if fmt in ("hdf5", "netcdf4"):
        with h5py.File(path, "r") as fh:
            dataset = fh[_address(entry) or "/"]
            return cf_decode(dataset[...], dict(dataset.attrs), dtype)
    if fmt == "zarr":
        return zarr_pixels(path)
    raise AssertionError(f"no independent reader for format {fmt!r}")


def zarr_pixels(path: Path) -> np.ndarray:
    """Full-resolution array of a Zarr: the first NGFF multiscale dataset, or the array itself."""
    node = zarr.open(store=str(path), mode="r")
    if isinstance(node, zarr.Array):
        return node[...]
    multiscales = node.attrs.get("multiscales")
    assert multiscales, "a Zarr group without NGFF multiscales has no defined image array"
    return node[multiscales[0]["datasets"][0]["path"]][...]


def cf_decode(raw: np.ndarray, attrs: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    """Raw HDF5 values as the stored dtype: unchanged, ``_Unsigned`` reinterpreted, or CF-unpacked to float
    (``scale_factor``/``add_offset``, ``_FillValue`` → NaN) — the three readings the manifest accepts."""
    dtype = np.dtype(dtype)
    if raw.dtype == dtype:
        return raw
    fill = attrs.get("_FillValue")
    missing = raw == np.asarray(fill).astype(raw.dtype) if fill is not None else np.zeros(raw.shape, bool)
    flag = np.asarray(attrs.get("_Unsigned", "false")).item()
    unsigned = (flag.decode() if isinstance(flag, bytes) else str(flag)).lower() == "true"
    if unsigned and raw.dtype.kind == "i":
        raw = raw.view(raw.dtype.str.replace("i", "u"))
    if raw.dtype == dtype:
        return raw
    assert dtype.kind == "f", f"cannot relate raw {raw.dtype} to stored {dtype}"
    scale = float(np.asarray(attrs.get("scale_factor", 1.0)).item())
    offset = float(np.asarray(attrs.get("add_offset", 0.0)).item())
    values = raw.astype(np.float64) * scale + offset
    values[missing] = np.nan
    return values.astype(dtype)


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_validate_matches_manifest(entry: dict[str, Any]) -> None:
    """validate() reports the manifest's validity, format, shape, dtype, CRS, bounds, nodata, sha256."""
    report = validate(manifest_source(entry), sha256=entry["sha256"])
    assert report["valid"] is entry["valid_expected"], report["errors"]
    info = report["info"]
    check_facts(entry, info)
    assert info["sha256"] == entry["sha256"]
    check_nodata(info["nodata"], entry["nodata"])


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_ingest_matches_manifest(entry: dict[str, Any], catalog_env: str) -> None:
    """Ingest stores the manifest's facts, and level 0 equals the source as an independent reader sees it."""
    if not entry["valid_expected"]:
        with pytest.raises(ValidationFailed):
            imagelib.ingest(manifest_source(entry), "samples", "manifest", sha256=entry["sha256"])
        assert imagelib.versions("samples", "manifest") == []
        return
    result = imagelib.ingest(manifest_source(entry), "samples", "manifest", sha256=entry["sha256"])
    check_facts(entry, result)
    assert result["checksum"] == entry["sha256"]
    stored = imagelib.open(result["version"])
    assert list(stored.shape) == result["shape"]
    assert str(stored.dtype) == result["dtype"]
    check_nodata(stored.attrs.get("nodata"), entry["nodata"])
    # the stored level 0 holds exactly the source pixels, as a reader that is not imagelib's finds them
    original = independent_pixels(entry, stored.dtype)
    assert squeezed(list(original.shape)) == squeezed(entry["shape"])  # it read the right array
    pixels = stored.values
    assert np.squeeze(pixels).shape == np.squeeze(original).shape
    assert pixels.dtype == original.dtype
    np.testing.assert_array_equal(np.squeeze(pixels), np.squeeze(original))
    assert [v["version"] for v in imagelib.versions("samples", "manifest")] == [result["version"]]


def test_ambiguous_hdf5_lists_candidates(home: object) -> None:
    """A bare HDF5 file with two candidate datasets is refused with both listed."""
    with pytest.raises(ValidationFailed) as info:
        imagelib.ingest(str(DATA / "two-subs.h5"), "samples", "h5")
    error = info.value.report["errors"][0]
    assert error["code"] == "DATASET_AMBIGUOUS"
    assert error["expected"] == ["/data", "/data2"]
    assert "/data" in error["message"] and "/data2" in error["message"]


def test_bounds_4326_of_utm_sample(home: object) -> None:
    """UTM bounds are reprojected to a plausible EPSG:4326 box."""
    result = imagelib.ingest(str(DATA / "RGB.byte.tif"), "samples", "rgb")
    west, south, east, north = result["bounds_4326"]
    # UTM 18N: the scene lies west of -75° and in the northern tropics
    assert -80 < west < east < -75 and 23 < south < north < 26
    assert not any(math.isnan(v) for v in result["bounds_4326"])
