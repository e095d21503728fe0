"""The reader registry: content-based dispatch in a fixed order, third-party readers via entry points."""

from __future__ import annotations

import shutil
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from imagelib.errors import ImagelibError
from imagelib.formats import ATTR_KEYS, RasterMeta, detect_format, open_array, readers
from imagelib.formats.meta import MetaWarning
from imagelib.formats.registry import ReaderRegistry
from imagelib.formats.xarray_backend import ImagelibBackendEntrypoint
from tests.conftest import DATA

# the toy package also declares a broken and a missing plugin; their RuntimeWarnings are asserted once
pytestmark = pytest.mark.filterwarnings("ignore:imagelib reader plugin:RuntimeWarning")

PLUGIN = '''
"""A toy third-party format: b"TOYRASTR", height and width as uint16, then uint8 pixels."""
import struct
from pathlib import Path

import numpy as np
import xarray as xr


class ToyReader:
    name = "toy"

    def guess_can_open(self, path: Path) -> bool:
        return path.is_file() and path.read_bytes()[:8] == b"TOYRASTR"

    def open(self, path: Path, address):
        raw = path.read_bytes()
        height, width = struct.unpack("<HH", raw[8:12])
        pixels = np.frombuffer(raw[12:], dtype="uint8").reshape(height, width)
        return xr.DataArray(pixels, dims=("y", "x"), attrs={"format": "toy", "units": "counts"})


class Broken:
    pass
'''


def toy_file(path: Path, pixels: np.ndarray) -> Path:
    path.write_bytes(b"TOYRASTR" + np.array(pixels.shape, dtype="<u2").tobytes() + pixels.tobytes())
    return path


@pytest.fixture
def toy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A package declaring ``[imagelib.readers] toy = toyformat:ToyReader``, put on sys.path at runtime."""
    site = tmp_path / "site"
    (site / "toyformat").mkdir(parents=True)
    (site / "toyformat" / "__init__.py").write_text(PLUGIN)
    dist = site / "toyformat-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyformat\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [imagelib.readers]
            toy = toyformat:ToyReader
            zz-broken = toyformat:Broken
            zz-missing = toyformat_missing:Reader
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    readers().refresh()
    yield
    monkeypatch.undo()
    readers().refresh()


def test_builtins_in_fixed_order() -> None:
    assert readers().names()[:3] == ["tiff", "hdf5", "zarr"]


@pytest.mark.parametrize(
    ("sample", "reader"),
    [("byte.tif", "tiff"), ("two-subs.h5", "hdf5"), ("20171025_2056.Cloud_Top_Height.nc", "hdf5")],
)
def test_dispatch_uses_content_not_suffix(tmp_path: Path, sample: str, reader: str) -> None:
    renamed = tmp_path / "renamed.zarr"  # a misleading suffix
    shutil.copyfile(DATA / sample, renamed)
    assert detect_format(renamed) == reader
    assert readers().guess(renamed).name == reader


def test_zarr_directory_is_claimed_by_structure(tmp_path: Path) -> None:
    copy = tmp_path / "store.tif"
    shutil.copytree(DATA / "ome_zarr_v2.zarr", copy)
    assert detect_format(copy) == "zarr"
    plain = tmp_path / "plain.zarr"
    plain.mkdir()
    with pytest.raises(ImagelibError) as info:
        detect_format(plain)
    assert info.value.code == "FORMAT_UNRECOGNIZED"


def test_third_party_reader_from_entry_point(tmp_path: Path, toy_plugin: None) -> None:
    pixels = np.arange(6 * 7, dtype="uint8").reshape(6, 7)
    path = toy_file(tmp_path / "scan.dat", pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = readers().names()
    assert names == ["tiff", "hdf5", "zarr", "toy"]  # the broken and missing plugins are skipped ...
    plugin_warnings = [str(w.message) for w in caught if "reader plugin" in str(w.message)]
    assert sorted(m.split("'")[1] for m in plugin_warnings) == ["zz-broken", "zz-missing"]  # ... loudly
    assert detect_format(path) == "toy"
    data = open_array(path)
    np.testing.assert_array_equal(data.values, pixels)
    assert set(ATTR_KEYS) <= set(data.attrs)  # normalised like every built-in's attrs
    assert data.attrs["format"] == "toy" and data.attrs["units"] == "counts"
    assert data.attrs["source_shape"] == [6, 7] and data.attrs["georeferenced"] is False
    assert ImagelibBackendEntrypoint().guess_can_open(path)
    ds = xr.open_dataset(path, engine="imagelib")
    np.testing.assert_array_equal(ds["scan"].values, pixels)


def test_plugin_gone_after_refresh(tmp_path: Path, toy_plugin: None) -> None:
    path = toy_file(tmp_path / "scan.dat", np.zeros((2, 2), dtype="uint8"))
    assert detect_format(path) == "toy"
    (tmp_path / "site" / "toyformat-1.0.dist-info" / "entry_points.txt").write_text("")
    readers().refresh()
    assert "toy" not in readers().names()
    with pytest.raises(ImagelibError) as info:
        open_array(path)
    assert info.value.code == "FORMAT_UNRECOGNIZED"


def test_registry_register_and_order() -> None:
    class Always:
        name = "always"

        def guess_can_open(self, path: Path) -> bool:
            return True

        def open(self, path: Path, address: str | None) -> xr.DataArray:
            return xr.DataArray(np.zeros((1, 1)), dims=("y", "x"))

    from imagelib.formats.tiff import TiffReader

    registry = ReaderRegistry([TiffReader()], group=None)
    registry.register(Always())
    assert registry.guess(DATA / "byte.tif").name == "tiff"  # built-ins are asked first
    assert registry.guess(DATA / "two-subs.h5").name == "always"
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Always())
    registry.unregister("always")
    assert registry.guess(DATA / "two-subs.h5") is None


def test_a_reader_that_crashes_gives_a_coded_error(tmp_path: Path, toy_plugin: None) -> None:
    path = tmp_path / "short.dat"
    path.write_bytes(b"TOYRASTR\x05\x00\x05\x00\x01")  # declares 25 pixels, holds 1
    with pytest.raises(ImagelibError) as info:
        open_array(path)
    assert info.value.code == "FORMAT_CORRUPT" and "toy" in info.value.message


def test_meta_model_round_trip() -> None:
    meta = RasterMeta(format="netcdf4", crs="EPSG:4326", nodata=-1.0, units="K", band_names=["t"])
    meta.warn("CRS_MISSING", "lost", "crs", ("crs", "transform"))
    attrs = meta.to_attrs()
    assert list(attrs)[: len(ATTR_KEYS)] == list(ATTR_KEYS)
    assert attrs["units"] == "K" and "scale_factor" not in attrs  # optional keys only when set
    assert attrs["warnings"] == [
        {"code": "CRS_MISSING", "message": "lost", "field": "crs", "lost": ["crs", "transform"]}
    ]
    back = RasterMeta.from_attrs({**attrs, "name": "a/b"})
    assert back.warnings == [MetaWarning("CRS_MISSING", "lost", "crs", ("crs", "transform"))]
    assert back.extra == {"name": "a/b"} and back.to_attrs() == {**attrs, "name": "a/b"}
    assert "warnings" not in RasterMeta(format="tiff").to_attrs()


def test_every_builtin_fills_the_model() -> None:
    for source in ("RGB.byte.tif", "two-subs.h5#/data", "ome_zarr_v2.zarr", "s_1_t_1_c_1_z_1.ome.tiff"):
        attrs = open_array(f"{DATA}/{source}").attrs
        assert list(attrs)[: len(ATTR_KEYS)] == list(ATTR_KEYS), source
        assert RasterMeta.from_attrs(attrs).to_attrs() == attrs
