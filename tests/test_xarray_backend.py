"""``xr.open_dataset(path, engine="imagelib")``: the same lazy readers through xarray's plugin system."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from imagelib.formats import open_array
from imagelib.formats.xarray_backend import ImagelibBackendEntrypoint
from tests.conftest import DATA


def test_engine_is_registered_and_loads() -> None:
    engines = xr.backends.list_engines()
    assert isinstance(engines["imagelib"], ImagelibBackendEntrypoint)


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("RGB.byte.tif", "RGB.byte"),
        ("two-subs.h5#/data2", "data2"),
        ("20171025_2056.Cloud_Top_Height.nc#/HT", "HT"),
        ("ome_zarr_v2.zarr", "ome_zarr_v2"),
    ],
)
def test_open_dataset_matches_reader(source: str, name: str) -> None:
    ds = xr.open_dataset(DATA / source if "#" not in source else f"{DATA}/{source}", engine="imagelib")
    var = ds[name]
    direct = open_array(f"{DATA}/{source}")
    assert var.dims == direct.dims and var.shape == direct.shape and var.dtype == direct.dtype
    np.testing.assert_array_equal(var.values, direct.values)
    for value in var.attrs.values():  # netCDF-writable: scalars, strings, flat numeric lists
        assert isinstance(value, str | int | float) or all(isinstance(v, int | float) for v in value), value


def test_guess_can_open_uses_content(tmp_path: Path) -> None:
    backend = ImagelibBackendEntrypoint()
    renamed = tmp_path / "really-a-tiff.nc"
    shutil.copyfile(DATA / "byte.tif", renamed)
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    assert backend.guess_can_open(renamed) and not backend.guess_can_open(text)
    assert not backend.guess_can_open(tmp_path / "missing.tif")


def test_address_keyword_and_coded_errors() -> None:
    ds = xr.open_dataset(DATA / "two-subs.h5", engine="imagelib", address="/data")
    assert list(ds.data_vars) == ["data"]
    from imagelib.errors import ImagelibError

    with pytest.raises(ImagelibError) as info:
        xr.open_dataset(DATA / "two-subs.h5", engine="imagelib")
    assert info.value.code == "DATASET_AMBIGUOUS"
