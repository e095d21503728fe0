"""``imagelib catalog export``: an intake 2 catalog whose every entry opens, through ``intake`` itself, as
the lazy DataArray ``imagelib.open`` returns (shape, dtype, CRS, attrs); the committed example agrees
with the sample corpus."""

from __future__ import annotations

import json
from pathlib import Path

import intake
import numpy as np
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

import imagelib
from imagelib.cli import app
from imagelib.context import Library
from imagelib.errors import NotFound, UsageError
from imagelib.intake_export import ImagelibReader, build_catalog
from tests.conftest import DATA, MANIFEST

EXAMPLE = Path(__file__).resolve().parents[1] / "catalogs" / "demo.yaml"
runner = CliRunner()


@pytest.fixture
def library(home: Path) -> Library:
    """Georeferenced, plain and float samples in namespace ``lab``, one more in ``other``, one derived."""
    lib = imagelib.connect(home)
    byte = imagelib.ingest(DATA / "byte.tif", "lab", "byte", lib=lib)["version"]
    imagelib.ingest(DATA / "chessboard_GRAY_U16.tif", "lab", "chess", lib=lib)
    imagelib.ingest(DATA / "float_raster_with_nodata.tif", "lab", "laea", lib=lib)
    imagelib.ingest(DATA / "float_nan.tif", "other", "nan", lib=lib)
    imagelib.apply(byte, [{"op": "gaussian", "sigma": 1.0}], lib=lib)
    return lib


def export(out: Path, *args: str) -> dict:
    """Run the CLI; its one JSON document."""
    result = runner.invoke(app, ["catalog", "export", "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_entry_opens_as_imagelib_open(library: Library, tmp_path: Path) -> None:
    """intake.open_catalog on the export: every version, right shape/dtype/CRS, attrs intact, lazy."""
    summary = export(tmp_path / "cat.yaml")
    rows = library.catalog.search()
    assert summary["entries"] == len(rows) == 5
    cat = intake.open_catalog(str(tmp_path / "cat.yaml"))
    assert sorted(cat.entries) == sorted(r["id"] for r in rows)
    for row in rows:
        data = cat[row["id"]].read()
        assert isinstance(data, xr.DataArray)
        assert list(data.shape) == row["shape"] and str(data.dtype) == row["dtype"]
        assert data.attrs.get("crs") == row["crs"]
        assert data.chunks is not None  # lazy: dask-backed, nothing read yet
        direct = imagelib.open(row["id"], lib=library)
        assert data.attrs == direct.attrs and data.dims == direct.dims
        np.testing.assert_array_equal(data.values, direct.values)
        meta = cat.entries[row["id"]].metadata
        assert (meta["shape"], meta["dtype"], meta["crs"]) == (row["shape"], row["dtype"], row["crs"])
    crs = {cat[r["id"]].read().attrs.get("crs") for r in rows}
    assert {"EPSG:26711", None} <= crs and any(c and "LAEA" in c for c in crs)


def test_datasets_are_aliases_of_their_newest_version(library: Library, tmp_path: Path) -> None:
    """``cat["lab/byte"]`` is the newest version of lab/byte (the derived one)."""
    export(tmp_path / "cat.yaml")
    cat = intake.open_catalog(str(tmp_path / "cat.yaml"))
    newest = library.catalog.versions("lab", "byte")[-1]
    assert newest["kind"] == "derived"
    assert cat.aliases["lab/byte"] == newest["id"]
    assert cat["lab/byte"].read().attrs["version"] == newest["id"]
    assert set(cat.aliases) == {"lab/byte", "lab/chess", "lab/laea", "other/nan"}


def test_namespace_filter(library: Library, tmp_path: Path) -> None:
    """--namespace keeps that namespace's versions only."""
    assert export(tmp_path / "other.yaml", "--namespace", "other")["entries"] == 1
    cat = intake.open_catalog(str(tmp_path / "other.yaml"))
    (only,) = cat.entries
    assert cat.entries[only].metadata["datasets"] == ["other/nan"]
    assert cat[only].read().shape == (1, 2, 3)


def test_location(library: Library, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --location entries follow the reader's environment; with it they pin this library."""
    export(tmp_path / "env.yaml")
    export(tmp_path / "pinned.yaml", "--location")
    version = library.catalog.versions("lab", "chess")[-1]["id"]
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "elsewhere"))
    assert intake.open_catalog(str(tmp_path / "pinned.yaml"))[version].read().shape == (200, 200)
    with pytest.raises(NotFound) as err:
        intake.open_catalog(str(tmp_path / "env.yaml"))[version].read()
    assert err.value.code == "VERSION_NOT_FOUND"


def test_location_never_writes_a_password() -> None:
    """A catalog URL with a password is refused for --location (it would land in a shared file)."""
    lib = imagelib.connect(catalog_url="postgresql+psycopg://me:s3cret@db.example/imagelib")
    with pytest.raises(UsageError):
        build_catalog(location=True, lib=lib)


def test_committed_example_matches_the_samples() -> None:
    """catalogs/demo.yaml (``make demo``'s library, exported) opens with intake; its rows agree with
    the sample corpus' manifest; it pins no machine's paths."""
    text = EXAMPLE.read_text()
    assert "file://" not in text and "sqlite" not in text and len(text) < 20_000
    cat = intake.open_catalog(str(EXAMPLE))
    by_sha = {entry["sha256"]: entry for entry in MANIFEST}
    roots = 0
    for name, entry in cat.entries.items():
        assert entry.reader == f"{ImagelibReader.__module__}:{ImagelibReader.__name__}"
        meta = entry.metadata
        assert meta["version"] == name == yaml.safe_load(text)["entries"][name]["kwargs"]["version"]
        if meta["kind"] == "root":
            roots += 1
            truth = by_sha[meta["checksum"]]
            assert meta["dtype"] == truth["dtype"]
            assert [n for n in meta["shape"] if n != 1] == [n for n in truth["shape"] if n != 1]
            assert (meta["crs"] is None) == (truth["crs"] is None)
    assert roots >= 4 and all(target in cat.entries for target in cat.aliases.values())
