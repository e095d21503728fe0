"""Readers tell the truth about what files claim: each defect class synthesised in a fixture.

Contradictions (a CRS that does not exist, coordinates impossible in the CRS) are coded errors; metadata
lost while the pixels stay usable (broken OME-XML, extra TIFF series) is a coded warning that a rule can
make an error. Pixels and pyramid levels are checked against rasterio and tifffile, or the written arrays.
"""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import tifffile
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from imagelib.errors import ImagelibError, ValidationFailed
from imagelib.formats import open_array, open_levels
from imagelib.formats.georef import geokey_epsg_codes
from imagelib.validation import RuleSet, validate
from tests.conftest import DATA

# RGB.byte.tif's UTM 18N extent: metres, impossible as degrees
UTM_X = (101985.0, 339315.0)
UTM_Y = (2611485.0, 2826915.0)


def codes(items: list[dict]) -> list[str]:
    return [item["code"] for item in items]


# --- pyramidal TIFF ------------------------------------------------------------------------------------


def ramp(height: int, width: int, dtype: str = "uint8") -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return ((yy * 7 + xx * 3) % 251).astype(dtype)


@pytest.fixture
def gdal_pyramid(tmp_path: Path) -> Path:
    """A tiled, non-georeferenced TIFF with GDAL internal overviews (COG layout without geo tags)."""
    path = tmp_path / "overviews.tif"
    profile = {"driver": "GTiff", "width": 301, "height": 203, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", tiled=True, blockxsize=64, blockysize=64, **profile) as ds:
        ds.write(ramp(203, 301)[None])
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
    return path


def test_gdal_overview_tiff_reads_level_0(gdal_pyramid: Path) -> None:
    data = open_array(gdal_pyramid)  # was FORMAT_CORRUPT: No array found in store ZarrTiffStore
    assert data.attrs["format"] == "tiff" and data.dims == ("y", "x")
    with rasterio.open(gdal_pyramid) as ds:
        np.testing.assert_array_equal(data.values, ds.read(1))
    report = validate(gdal_pyramid)
    assert report["valid"], report


def test_gdal_overviews_are_ready_made_levels(gdal_pyramid: Path) -> None:
    levels = open_levels(gdal_pyramid)
    assert [lv.shape for lv in levels] == [(203, 301), (102, 151), (51, 76)]  # ceil(n/2) each step
    for index, level in enumerate(levels[1:]):
        with rasterio.open(gdal_pyramid, overview_level=index) as ds:
            np.testing.assert_array_equal(level.values, ds.read(1))
        assert set(level.attrs) >= {"format", "crs", "bounds", "source_shape"}


def test_overviews_stop_at_the_first_that_is_not_a_halving(tmp_path: Path) -> None:
    path = tmp_path / "thirds.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8", tiled=True
    ) as ds:
        ds.write(ramp(256, 256)[None])
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 6], Resampling.nearest)  # 2× then 3× of that: only the first is a level
    assert [lv.shape for lv in open_levels(path)] == [(256, 256), (128, 128)]


def test_georeferenced_overviews_stop_at_the_first_that_is_not_a_halving(tmp_path: Path) -> None:
    path = tmp_path / "geo-thirds.tif"
    transform = from_origin(UTM_X[0], UTM_Y[1], 30, 30)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=256,
        height=256,
        count=1,
        dtype="uint8",
        tiled=True,
        crs="EPSG:32618",
        transform=transform,
    ) as ds:
        ds.write(ramp(256, 256)[None])
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 6], Resampling.nearest)
        assert [ds.overviews(1)] == [[2, 6]]
    assert [lv.shape for lv in open_levels(path)] == [(1, 256, 256), (1, 128, 128)]


def test_subifd_level_that_is_not_ceil_half_is_not_a_level(tmp_path: Path) -> None:
    base = ramp(203, 301)
    path = tmp_path / "floor.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, tile=(64, 64), subifds=1, metadata=None)
        tif.write(base[:-1:2, :-1:2], tile=(64, 64), subfiletype=1, metadata=None)  # 101×150, floor
    with tifffile.TiffFile(path) as tif:
        assert [lv.shape for lv in tif.series[0].levels] == [(203, 301), (101, 150)]
    levels = open_levels(path)
    assert len(levels) == 1
    np.testing.assert_array_equal(levels[0].values, base)


def test_tifffile_subifd_pyramid(tmp_path: Path) -> None:
    """A whole-slide style pyramid in SubIFDs: level 0 and both 2× levels, equal to what was written."""
    base = ramp(300, 500, "uint16")
    pyramid = [base, base[::2, ::2], base[::4, ::4]]
    path = tmp_path / "slide.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, tile=(64, 64), subifds=2, metadata=None)
        for level in pyramid[1:]:
            tif.write(level, tile=(64, 64), subfiletype=1, metadata=None)
    data = open_array(path)
    np.testing.assert_array_equal(data.values, base)
    levels = open_levels(path)
    assert len(levels) == 3
    for level, expected in zip(levels, pyramid, strict=True):
        np.testing.assert_array_equal(level.values, expected)
    with tifffile.TiffFile(path) as tif:  # and tifffile's own reading of each level agrees
        for k, level in enumerate(levels):
            np.testing.assert_array_equal(level.values, tif.series[0].levels[k].asarray())


def test_georeferenced_cog_levels_match_rasterio() -> None:
    levels = open_levels(DATA / "cogeo.tif")
    assert len(levels) > 2
    with rasterio.open(DATA / "cogeo.tif") as ds:
        base_transform = ds.transform
        assert len(levels) == len(ds.overviews(1)) + 1
    for index, level in enumerate(levels[1:]):
        with rasterio.open(DATA / "cogeo.tif", overview_level=index) as ds:
            np.testing.assert_array_equal(level.values, ds.read())
            assert level.attrs["transform"] == pytest.approx(list(ds.transform)[:6])
        scale = 2 ** (index + 1)
        assert level.attrs["transform"][0] == pytest.approx(base_transform.a * scale, rel=1e-9)
        assert level.attrs["bounds"] == pytest.approx(levels[0].attrs["bounds"], rel=1e-6)


def test_plain_files_have_one_level() -> None:
    assert len(open_levels(DATA / "RGB.byte.tif")) == 1
    assert len(open_levels(f"{DATA}/two-subs.h5#/data")) == 1


# --- multi-page TIFF -----------------------------------------------------------------------------------


def test_uniform_pages_become_a_z_stack(tmp_path: Path) -> None:
    planes = np.stack([ramp(64, 80, "uint16") + i * 1000 for i in range(4)])
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:  # plain libtiff-style pages, no imagelib/ImageJ metadata
        for plane in planes:
            tif.write(plane, metadata=None)
    data = open_array(path)
    assert data.dims == ("z", "y", "x") and data.shape == (4, 64, 80)
    with tifffile.TiffFile(path) as tif:
        for i, page in enumerate(tif.pages):
            np.testing.assert_array_equal(data.values[i], page.asarray())
    assert "warnings" not in data.attrs


def test_pages_of_other_shapes_are_ignored_with_a_warning(tmp_path: Path) -> None:
    first, other = ramp(64, 64), ramp(32, 48)
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(first, metadata=None)
        tif.write(other, metadata=None)
    data = open_array(path)
    np.testing.assert_array_equal(data.values, first)
    assert codes(data.attrs["warnings"]) == ["SERIES_IGNORED"]
    report = validate(path)
    assert report["valid"] and codes(report["warnings"]) == ["SERIES_IGNORED"]


# --- NetCDF / HDF5 CF georeferencing ------------------------------------------------------------------


def cf_file(path: Path, x: np.ndarray, y: np.ndarray, mapping: dict | None, name: str = "crs") -> Path:
    """A NetCDF4-style HDF5 file: ``data(y, x)`` with dimension scales and a ``grid_mapping`` variable."""
    with h5py.File(path, "w") as fh:
        fh.attrs["_NCProperties"] = "version=2"
        fh["x"], fh["y"] = x, y
        fh["x"].make_scale("x")
        fh["y"].make_scale("y")
        data = fh.create_dataset("data", data=np.arange(len(y) * len(x), dtype="float32").reshape(len(y), -1))
        data.dims[0].attach_scale(fh["y"])
        data.dims[1].attach_scale(fh["x"])
        data.attrs["grid_mapping"] = name
        if mapping is not None:
            fh.create_dataset(name, data=np.int32(0))
            for key, value in mapping.items():
                fh[name].attrs[key] = value
    return path


def centres(lo: float, hi: float, n: int) -> np.ndarray:
    step = (hi - lo) / n
    return lo + step * (np.arange(n) + 0.5)


LATLON = {"grid_mapping_name": "latitude_longitude"}


def test_cf_plausible_latlon(tmp_path: Path) -> None:
    x, y = centres(-10.0, 30.0, 40), centres(60.0, 35.0, 25)  # north-up: y decreasing
    data = open_array(cf_file(tmp_path / "ok.nc", x, y, LATLON))
    assert CRS.from_user_input(data.attrs["crs"]).equals(CRS.from_epsg(4326), ignore_axis_order=True)
    assert data.attrs["bounds"] == pytest.approx([-10.0, 35.0, 30.0, 60.0])
    assert data.attrs["transform"] == pytest.approx([1.0, 0.0, -10.0, 0.0, -1.0, 60.0])


def test_cf_latlon_with_metre_coordinates_is_inconsistent(tmp_path: Path) -> None:
    x, y = centres(*UTM_X, 50), centres(UTM_Y[1], UTM_Y[0], 40)
    path = cf_file(tmp_path / "metres.nc", x, y, LATLON)
    with pytest.raises(ImagelibError) as info:
        open_array(path)
    assert info.value.code == "CRS_INCONSISTENT" and info.value.field == "crs"
    report = validate(path)
    assert not report["valid"] and codes(report["errors"]) == ["CRS_INCONSISTENT"]


def test_cf_projected_extent_far_from_area_of_use_is_inconsistent(tmp_path: Path) -> None:
    lambert93 = {"crs_wkt": CRS.from_epsg(2154).to_wkt()}  # France
    paris = cf_file(tmp_path / "paris.nc", centres(640e3, 660e3, 20), centres(6870e3, 6850e3, 20), lambert93)
    assert open_array(paris).attrs["crs"] == "EPSG:2154"
    # UTM 18N (Bahamas) coordinates labelled Lambert-93: they project to ~11°N, far from France
    wrong = cf_file(tmp_path / "wrong.nc", centres(*UTM_X, 20), centres(UTM_Y[1], UTM_Y[0], 20), lambert93)
    with pytest.raises(ImagelibError) as info:
        open_array(wrong)
    assert info.value.code == "CRS_INCONSISTENT"


def test_cf_unparseable_grid_mapping_is_crs_invalid(tmp_path: Path) -> None:
    x, y = centres(-10.0, 30.0, 8), centres(60.0, 35.0, 5)
    bad_wkt = cf_file(tmp_path / "wkt.nc", x, y, {"crs_wkt": 'GEOGCS["broken",DATUM['})
    unknown = cf_file(tmp_path / "name.nc", x, y, {"grid_mapping_name": "no_such_projection"})
    missing = cf_file(tmp_path / "missing.nc", x, y, None)  # grid_mapping names a variable not there
    for path in (bad_wkt, unknown, missing):
        with pytest.raises(ImagelibError) as info:
            open_array(path)
        assert info.value.code == "CRS_INVALID", path
        assert codes(validate(path)["errors"]) == ["CRS_INVALID"]


def test_cf_grid_mapping_without_coordinates_warns(tmp_path: Path) -> None:
    path = tmp_path / "nocoords.nc"
    with h5py.File(path, "w") as fh:
        fh["data"] = np.zeros((4, 5), dtype="float32")
        fh["data"].attrs["grid_mapping"] = "crs"
        fh.create_dataset("crs", data=np.int32(0))
        fh["crs"].attrs["grid_mapping_name"] = "latitude_longitude"
    data = open_array(path)
    assert data.attrs["crs"] is None and codes(data.attrs["warnings"]) == ["CRS_MISSING"]
    assert validate(path)["valid"]
    strict = validate(path, RuleSet(crs_required=True))
    assert not strict["valid"] and codes(strict["errors"]) == ["CRS_MISSING"]


def test_cf_irregular_coordinates_lose_the_transform_with_a_warning(tmp_path: Path) -> None:
    x = np.array([0.0, 1.0, 2.0, 4.0, 8.0])  # not an affine grid
    path = cf_file(tmp_path / "irregular.nc", x, centres(60.0, 56.0, 4), LATLON)
    data = open_array(path)
    assert (
        data.attrs["transform"] is None and data.attrs["bounds"] is None and not data.attrs["georeferenced"]
    )
    assert [(w["code"], w["field"]) for w in data.attrs["warnings"]] == [("CRS_MISSING", "transform")]
    assert validate(path)["valid"]
    strict = validate(path, RuleSet(max_resolution=10.0))
    assert "CRS_MISSING" in codes(strict["errors"])


def test_sample_geostationary_netcdf_stays_plausible() -> None:
    data = open_array(f"{DATA}/20171025_2056.Cloud_Top_Height.nc#/HT")
    assert data.attrs["georeferenced"] and "warnings" not in data.attrs


# --- GeoTIFF ------------------------------------------------------------------------------------------


def write_geotiff(path: Path, crs: str, transform: object) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=16, height=12, count=1, dtype="uint8", crs=crs, transform=transform
    ) as ds:
        ds.write(ramp(12, 16)[None])
    return path


def patch_geokey(path: Path, old: int, new: int) -> None:
    """Rewrite one inline GeoKey value in the GeoKeyDirectory tag, in place."""
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[34735]
        values, offset = list(tag.value), tag.valueoffset
    index = next(4 + 4 * i + 3 for i in range(values[3]) if values[4 + 4 * i + 3] == old)
    with path.open("r+b") as fh:
        fh.seek(offset + 2 * index)
        assert struct.unpack("<H", fh.read(2))[0] == old
        fh.seek(offset + 2 * index)
        fh.write(struct.pack("<H", new))


@pytest.mark.parametrize("missing", [29999, 32799])  # unassigned, and in the spec's private range
def test_geotiff_naming_a_missing_epsg_code_is_crs_invalid(tmp_path: Path, missing: int) -> None:
    path = write_geotiff(tmp_path / "utm.tif", "EPSG:32618", from_origin(UTM_X[0], UTM_Y[1], 300, 300))
    assert open_array(path).attrs["crs"] == "EPSG:32618"
    patch_geokey(path, 32618, missing)
    with tifffile.TiffFile(path) as tif:
        assert geokey_epsg_codes(tif.pages[0].tags[34735].value) == {"ProjectedCSTypeGeoKey": missing}
    with rasterio.open(path) as ds:  # GDAL guesses a CRS from the citation instead of failing
        assert ds.crs is not None and ds.crs.to_epsg() is None
    with pytest.raises(ImagelibError) as info:
        open_array(path)
    assert info.value.code == "CRS_INVALID" and info.value.found == f"EPSG:{missing}"
    assert codes(validate(path)["errors"]) == ["CRS_INVALID"]


def test_geotiff_degrees_crs_with_metre_coordinates_is_inconsistent(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "lie.tif", "EPSG:4326", from_origin(UTM_X[0], UTM_Y[1], 300, 300))
    with pytest.raises(ImagelibError) as info:
        open_array(path)
    assert info.value.code == "CRS_INCONSISTENT"
    fine = write_geotiff(tmp_path / "fine.tif", "EPSG:4326", from_origin(-75.0, 40.0, 0.01, 0.01))
    assert open_array(fine).attrs["bounds"] == pytest.approx([-75.0, 39.88, -74.84, 40.0])


@pytest.mark.parametrize(
    "name",
    ["RGB.byte.tif", "RGBA.uint16.tif", "alpha.tif", "byte.tif", "cogeo.tif", "shade.tif", "world.rgb.tif"],
)
def test_sample_geotiffs_are_plausible(name: str) -> None:
    data = open_array(DATA / name)
    assert data.attrs["crs"] and "warnings" not in data.attrs


def test_ingest_refuses_inconsistent_crs(tmp_path: Path, home: Path) -> None:
    from imagelib.ingestion import ingest

    path = write_geotiff(tmp_path / "lie.tif", "EPSG:4326", from_origin(UTM_X[0], UTM_Y[1], 300, 300))
    with pytest.raises(ValidationFailed) as info:
        ingest(path, "truth", "lie")
    assert info.value.code == "CRS_INCONSISTENT"
    assert not (home / "store" / "versions").exists() or not any((home / "store" / "versions").iterdir())


# --- OME-TIFF -----------------------------------------------------------------------------------------


def write_ome(path: Path) -> tuple[Path, np.ndarray]:
    image = np.stack([ramp(40, 60, "uint16") * (c + 1) for c in range(2)])
    metadata = {
        "axes": "CYX",
        "PhysicalSizeX": 0.25,
        "PhysicalSizeY": 0.5,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeYUnit": "nm",
        "Channel": {"Name": ["DAPI", "GFP"]},
    }
    tifffile.imwrite(path, image, ome=True, metadata=metadata)
    return path, image


def break_ome_xml(path: Path) -> None:
    """Corrupt the XML syntax of the OME ImageDescription without changing the file's length."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b"<Pixels ")
    raw[at : at + 8] = b"<Pixels="  # an element name followed by '=': not well-formed XML
    path.write_bytes(bytes(raw))


def test_ome_metadata_comes_from_ome_types(tmp_path: Path) -> None:
    path, image = write_ome(tmp_path / "cells.ome.tif")
    data = open_array(path)
    assert data.attrs["format"] == "ome-tiff" and data.dims == ("band", "y", "x")
    np.testing.assert_array_equal(data.values, image)
    assert data.attrs["band_names"] == ["DAPI", "GFP"]
    assert data.attrs["spacing"] == pytest.approx({"x": 0.25, "y": 0.5e-3})  # nm converted to µm
    assert "warnings" not in data.attrs


def test_broken_ome_xml_reads_pixels_and_warns(tmp_path: Path) -> None:
    path, image = write_ome(tmp_path / "broken.ome.tif")
    break_ome_xml(path)
    data = open_array(path)
    np.testing.assert_array_equal(data.values, image)
    assert data.attrs["format"] == "ome-tiff"  # what the file claims, never a silent plain "tiff"
    # without the XML nothing says the two pages are channels: a plain multi-page stack
    assert data.dims == ("z", "y", "x") and data.attrs["spacing"] is None and data.attrs["band_names"] == []
    (warning,) = data.attrs["warnings"]
    assert warning["code"] == "METADATA_INVALID" and set(warning["lost"]) == {"spacing", "band_names"}
    report = validate(path)
    assert report["valid"] and codes(report["warnings"]) == ["METADATA_INVALID"]
    strict = validate(path, RuleSet(formats=["ome-tiff"]))
    assert not strict["valid"] and codes(strict["errors"]) == ["METADATA_INVALID"]
    assert validate(path, RuleSet(formats=["tiff", "ome-tiff"]))["valid"]
    assert codes(validate(path, RuleSet(required_metadata=["spacing"]))["errors"]) == [
        "METADATA_MISSING",
        "METADATA_INVALID",
    ]


def test_ingest_keeps_reader_warnings_in_version_attrs(tmp_path: Path, home: Path) -> None:
    import zarr

    from imagelib.ingestion import ingest

    path, _ = write_ome(tmp_path / "broken.ome.tif")
    break_ome_xml(path)
    with pytest.raises(ValidationFailed) as info:
        ingest(path, "truth", "strict", rules=RuleSet(formats=["ome-tiff"]))
    assert info.value.code == "METADATA_INVALID"
    version = ingest(path, "truth", "lenient")["version"]
    group = zarr.open_group(str(home / "store" / "versions" / version / "image.zarr"), mode="r")
    assert codes(group.attrs["imagelib"]["warnings"]) == ["METADATA_INVALID"]


def test_ome_check_does_not_import_ome_types_for_plain_tiff() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from imagelib.formats import open_array; "
        f"open_array({str(DATA / 'RGB.byte.tif')!r}); open_array({str(DATA / 'chessboard_GRAY_U16.tif')!r}); "
        "print('ome_types' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
