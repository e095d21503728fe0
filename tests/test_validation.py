"""Schema and content rules give stable codes with field, expected and found values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from imagelib.errors import ImagelibError
from imagelib.validation import RuleSet, load_rules, validate
from tests.conftest import DATA


def codes(report: dict) -> list[str]:
    return [e["code"] for e in report["errors"]]


@pytest.mark.parametrize(
    ("rules", "file", "code", "field"),
    [
        ({"formats": ["ome-tiff"]}, "byte.tif", "FORMAT_NOT_ALLOWED", "format"),
        ({"dims": [["y", "x"]]}, "RGB.byte.tif", "DIMENSIONS_NOT_ALLOWED", "dims"),
        ({"max_bands": 3}, "RGBA.uint16.tif", "BAND_COUNT_NOT_ALLOWED", "band_count"),
        ({"dtypes": ["uint8"]}, "RGBA.uint16.tif", "DTYPE_NOT_ALLOWED", "dtype"),
        ({"crs_required": True}, "chessboard_GRAY_U16.tif", "CRS_MISSING", "crs"),
        ({"allowed_crs": ["EPSG:4326"]}, "RGB.byte.tif", "CRS_NOT_ALLOWED", "crs"),
        ({"min_resolution": 500}, "RGB.byte.tif", "RESOLUTION_OUT_OF_RANGE", "resolution"),
        ({"max_resolution": 10}, "RGB.byte.tif", "RESOLUTION_OUT_OF_RANGE", "resolution"),
        ({"nodata_required": True}, "byte.tif", "NODATA_MISSING", "nodata"),
        ({"required_metadata": ["time"]}, "byte.tif", "METADATA_MISSING", "time"),
        ({"value_range": [0, 100]}, "byte.tif", "VALUE_OUT_OF_RANGE", "pixels"),
        ({"nan": "forbid"}, "float_nan.tif", "NAN_FORBIDDEN", "pixels"),
        ({"max_pixels": 1000}, "RGB.byte.tif", "DIMENSIONS_TOO_LARGE", "shape"),
    ],
)
def test_rule_violations_are_coded(rules: dict, file: str, code: str, field: str) -> None:
    report = validate(DATA / file, rules=RuleSet(**rules))
    assert report["valid"] is False
    error = report["errors"][0]
    assert codes(report) == [code] and error["field"] == field
    assert "expected" in error and error["message"]


def test_passing_rules_keep_file_valid() -> None:
    rules = RuleSet(
        formats=["geotiff"],
        dims=[["band", "y", "x"]],
        dtypes=["uint8"],
        allowed_crs=["EPSG:32618"],
        min_resolution=100,
        max_resolution=500,
        nodata_required=True,
        value_range=[0, 255],
        min_bands=3,
        max_bands=3,
        nan="forbid",
        inf="forbid",
    )
    report = validate(DATA / "RGB.byte.tif", rules=rules)
    assert report["valid"], report["errors"]
    assert report["info"]["stats"]["max"] == [255.0, 255.0, 255.0]


def test_crs_allowed_by_equivalent_definition() -> None:
    wkt = rasterio.crs.CRS.from_epsg(32618).to_wkt()
    assert validate(DATA / "RGB.byte.tif", rules=RuleSet(allowed_crs=[wkt]))["valid"]


def test_inf_and_value_range_on_float_data(tmp_path: Path) -> None:
    path = tmp_path / "inf.tif"
    data = np.zeros((1, 8, 8), dtype="float32")
    data[0, 1, 1], data[0, 2, 2], data[0, 3, 3] = np.inf, -5.0, -9999.0
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="float32",
        nodata=-9999.0,
        crs="EPSG:4326",
        transform=from_origin(0, 8, 1, 1),
    ) as dst:
        dst.write(data)
    report = validate(path, rules=RuleSet(inf="forbid", value_range=[-1, 1]))
    assert codes(report) == ["INF_FORBIDDEN", "VALUE_OUT_OF_RANGE"]
    assert report["errors"][1]["found"] == [-5.0, 0.0]  # the nodata -9999 is excluded from the range


def test_checksum_mismatch_reports_both_values() -> None:
    report = validate(DATA / "byte.tif", sha256="0" * 64)
    error = report["errors"][0]
    assert error["code"] == "CHECKSUM_MISMATCH" and error["expected"] == "0" * 64
    assert error["found"] == report["info"]["sha256"]


def test_rule_files_yaml_and_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text("dtypes: [uint8]\nallowed_crs: ['EPSG:26711']\n")
    assert load_rules(good).dtypes == ["uint8"]
    assert validate(DATA / "byte.tif", rules=good)["valid"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("dtype: [uint8]\n")  # typo: unknown key must not be ignored silently
    with pytest.raises(ImagelibError) as info:
        load_rules(bad)
    assert info.value.code == "RULES_INVALID"


@pytest.mark.parametrize("rows", [64, 100])
def test_read_block_gives_the_source_pixels(rows: int) -> None:
    """Strips of one dask chunk (taken without dask's defensive copy, handed over read-only) and of
    several chunks equal the NumPy source, and iter_blocks covers every row exactly once."""
    import dask.array as da
    import xarray as xr

    from imagelib.validation.content import iter_blocks, read_block

    source = np.random.default_rng(rows).integers(0, 65535, (3, 300, 170), dtype=np.uint16)
    data = xr.DataArray(da.from_array(source, chunks=(3, rows, 170)), dims=("band", "y", "x"))
    one = read_block(data, (slice(0, 3), slice(0, rows)))
    assert np.array_equal(one, source[:, :rows]) and not one.flags.writeable
    several = read_block(data, (slice(0, 3), slice(rows // 2, 300)))
    assert np.array_equal(several, source[:, rows // 2 :])
    strips = [(index[-1], block) for index, block in iter_blocks(data, block_bytes=3 * 2 * 170 * 64)]
    assert np.array_equal(np.concatenate([b for _, b in strips], axis=1), source)
    assert [s.start for s, _ in strips] == list(range(0, 300, strips[0][0].stop))
