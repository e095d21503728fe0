"""Every sample file in shared/data/MANIFEST.json is validated and ingested as the manifest says."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pyproj import CRS, Transformer

import imagelib
from imagelib.errors import ValidationFailed
from imagelib.formats import open_array
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


def check_facts(entry: dict[str, Any], facts: dict[str, Any]) -> None:
    # singleton axes may be squeezed (leading band; NGFF t/z); the untouched source shape is kept too
    assert squeezed(facts["shape"]) == squeezed(entry["shape"]) or facts["source_shape"] == entry["shape"]
    assert facts["dtype"] in [entry["dtype"], *entry.get("dtype_alternatives", [])]
    assert same_crs(facts["crs"], entry["crs"]), (facts["crs"], entry["crs"])
    if entry["bounds"] is None:
        assert facts["bounds"] is None
    else:
        assert facts["bounds"] == pytest.approx(entry["bounds"], rel=1e-9, abs=1e-5)


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_validate_matches_manifest(entry: dict[str, Any]) -> None:
    report = validate(manifest_source(entry), sha256=entry["sha256"])
    assert report["valid"] is entry["valid_expected"], report["errors"]
    info = report["info"]
    check_facts(entry, info)
    assert info["sha256"] == entry["sha256"]
    expected_nodata = entry["nodata"]
    if expected_nodata == "nan":
        assert info["nodata"] == "nan"
    elif expected_nodata is not None:
        assert float(info["nodata"]) == pytest.approx(float(expected_nodata), rel=1e-7)


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_ingest_matches_manifest(entry: dict[str, Any], catalog_env: str) -> None:
    result = imagelib.ingest(manifest_source(entry), "samples", "manifest", sha256=entry["sha256"])
    check_facts(entry, result)
    assert result["checksum"] == entry["sha256"]
    stored = imagelib.open(result["version"])
    assert list(stored.shape) == result["shape"]
    assert str(stored.dtype) == result["dtype"]
    # the stored level 0 holds exactly the source pixels
    original = open_array(manifest_source(entry))
    np.testing.assert_array_equal(stored.values, original.values)
    assert [v["version"] for v in imagelib.versions("samples", "manifest")] == [result["version"]]


def test_ambiguous_hdf5_lists_candidates(home: object) -> None:
    with pytest.raises(ValidationFailed) as info:
        imagelib.ingest(str(DATA / "two-subs.h5"), "samples", "h5")
    error = info.value.report["errors"][0]
    assert error["code"] == "DATASET_AMBIGUOUS"
    assert error["expected"] == ["/data", "/data2"]
    assert "/data" in error["message"] and "/data2" in error["message"]


def test_bounds_4326_of_utm_sample(home: object) -> None:
    result = imagelib.ingest(str(DATA / "RGB.byte.tif"), "samples", "rgb")
    west, south, east, north = result["bounds_4326"]
    # UTM 18N: the scene lies west of -75° and in the northern tropics
    assert -80 < west < east < -75 and 23 < south < north < 26
    assert not any(math.isnan(v) for v in result["bounds_4326"])
