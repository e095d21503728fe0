"""The library context: explicit contexts side by side, the environment's default, scoped overrides, and
the two bugs the foundation issue found (stale tiles across configurations, chain text in apply)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from typer.testing import CliRunner

import imagelib
from imagelib.cli import app
from imagelib.context import Library, connect, current, using
from imagelib.errors import ChainError, NotFound
from imagelib.tiling import render_tile
from imagelib.tiling.cache import TileCache
from tests.conftest import _pg_database, free_port


def write_tif(path: Path, seed: int, size: int = 300) -> np.ndarray:
    """A 3-band uint8 GeoTIFF of random texture (different seeds give different images)."""
    data = np.random.default_rng(seed).integers(0, 256, (3, size, size), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8"}
    profile.update(crs="EPSG:32633", transform=from_origin(500000, 5000000, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def top_left(png: bytes) -> np.ndarray:
    """The RGB pixels of a full-resolution DZI tile (level 9 of a 300² image is level 0's scale)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_stale_tiles_after_changing_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest + render under home A, delete A, ingest the same file under home B: B's tile is the image,
    not the all-black tile a per-process memo of A's (deleted) store used to give."""
    source = tmp_path / "scene.tif"
    data = write_tif(source, seed=1)
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "A"))
    monkeypatch.delenv("IMAGELIB_STORE", raising=False)
    monkeypatch.delenv("IMAGELIB_CATALOG", raising=False)
    version = imagelib.ingest(source, "ns", "ds")["version"]
    first = render_tile(version, 9, 0, 0, "png")
    shutil.rmtree(tmp_path / "A")
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "B"))
    assert imagelib.ingest(source, "ns", "ds")["version"] == version  # content-addressed: same ID
    assert render_tile(version, 9, 0, 0, "png") == first
    # level 8 = the 2×2 means of the 300² image: chunks that were never read from A
    half = top_left(render_tile(version, 8, 0, 0, "png"))
    means = data.astype(np.float64).reshape(3, 150, 2, 150, 2).mean(axis=(2, 4))
    expected = np.floor(means + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(half, np.moveaxis(expected, 0, -1))


def test_apply_accepts_chain_text_list_and_file(home: Path, tmp_path: Path) -> None:
    """One chain loader: a list, JSON text and a JSON file give the same derived version; bad text is a
    coded CHAIN_INVALID (a ValueError too), never an uncoded FileNotFoundError."""
    write_tif(tmp_path / "a.tif", seed=2)
    version = imagelib.ingest(tmp_path / "a.tif", "ns", "ds")["version"]
    chain = [{"op": "gaussian", "sigma": 1}]
    from_list = imagelib.apply(version, chain)
    assert imagelib.apply(version, '[{"op": "gaussian", "sigma": 1}]') == from_list
    (tmp_path / "chain.json").write_text(json.dumps(chain))
    assert imagelib.apply(version, tmp_path / "chain.json") == from_list
    assert imagelib.apply(version, str(tmp_path / "chain.json")) == from_list
    for bad, code in (
        ("[{", "CHAIN_INVALID"),
        ("no/such/chain.json", "CHAIN_INVALID"),
        ('[{"op": "x"}]', "OP_UNKNOWN"),
    ):
        with pytest.raises(ChainError) as info:
            imagelib.apply(version, bad)
        assert info.value.code == code and isinstance(info.value, ValueError)


def test_tile_chain_text_and_file_agree(home: Path, tmp_path: Path) -> None:
    """render_tile takes the chain as a list, text or file through the same loader."""
    write_tif(tmp_path / "a.tif", seed=3)
    version = imagelib.ingest(tmp_path / "a.tif", "ns", "ds")["version"]
    (tmp_path / "c.json").write_text('[{"op": "median", "size": 3}]')
    as_list = render_tile(version, 9, 0, 0, "png", chain=[{"op": "median", "size": 3}], cache=None)
    assert render_tile(version, 9, 0, 0, "png", chain='[{"op":"median","size":3}]', cache=None) == as_list
    assert render_tile(version, 9, 0, 0, "png", chain=tmp_path / "c.json", cache=None) == as_list
    assert as_list != render_tile(version, 9, 0, 0, "png", cache=None)


@pytest.mark.postgres
def test_two_contexts_side_by_side(tmp_path: Path) -> None:
    """A SQLite context and a PostgreSQL context in one process: ingest, render and list in both, with
    no cross-talk between their catalogs, stores and caches."""
    a_data = write_tif(tmp_path / "a.tif", seed=4)
    b_data = write_tif(tmp_path / "b.tif", seed=5)
    for pg_url in _pg_database():
        lite = connect(tmp_path / "home-a")
        pg = connect(tmp_path / "home-b", catalog_url=pg_url)
        va = imagelib.ingest(tmp_path / "a.tif", "ns", "ds", lib=lite)["version"]
        vb = imagelib.ingest(tmp_path / "b.tif", "ns", "ds", lib=pg)["version"]
        assert [v["version"] for v in imagelib.versions("ns", "ds", lib=lite)] == [va]
        assert [v["version"] for v in imagelib.versions("ns", "ds", lib=pg)] == [vb]
        with pytest.raises(NotFound):
            imagelib.open(vb, lib=lite)
        for lib, version, data in ((lite, va, a_data), (pg, vb, b_data)):
            tile = top_left(render_tile(version, 9, 0, 0, "png", lib=lib))
            np.testing.assert_array_equal(tile[:254, :254], np.moveaxis(data[:, :254, :254], 0, -1))
            np.testing.assert_array_equal(imagelib.open(version, lib=lib).values, data)
        assert pg.catalog.engine.dialect.name == "postgresql" and lite.catalog.engine.dialect.name == "sqlite"
        assert lite.store.url != pg.store.url
        pg.close()


def test_using_overrides_the_default_for_a_block(home: Path, tmp_path: Path) -> None:
    """``using(lib)`` makes verbs without ``lib=`` use that context inside the block only."""
    write_tif(tmp_path / "a.tif", seed=6)
    other = connect(tmp_path / "other")
    with using(other) as lib:
        assert current() is lib
        version = imagelib.ingest(tmp_path / "a.tif", "ns", "ds")["version"]
    assert current() is not other
    assert imagelib.versions("ns", "ds") == []  # the environment's default context has nothing
    assert [v["version"] for v in imagelib.versions("ns", "ds", lib=other)] == [version]


def test_default_context_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment only seeds the default: a changed IMAGELIB_HOME gives another context."""
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "one"))
    monkeypatch.delenv("IMAGELIB_STORE", raising=False)
    monkeypatch.delenv("IMAGELIB_CATALOG", raising=False)
    one = current()
    assert current() is one and one.settings.home == (tmp_path / "one").resolve()
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "two"))
    two = current()
    assert two is not one and two.store.url.endswith("two/store")


def test_clear_caches_empties_tiles_and_renderers(home: Path, tmp_path: Path) -> None:
    """Caches are held by the context and can be cleared."""
    write_tif(tmp_path / "a.tif", seed=7)
    lib = Library()
    version = imagelib.ingest(tmp_path / "a.tif", "ns", "ds", lib=lib)["version"]
    render_tile(version, 9, 0, 0, "png", lib=lib)
    tiles = lib.cache("tiles", TileCache)
    assert tiles.memory._data  # one tile cached
    lib.clear_caches()
    assert not tiles.memory._data


def test_lazy_verbs_are_listed() -> None:
    """dir(imagelib) (tab completion) shows the lazily imported verbs and the context API."""
    names = dir(imagelib)
    for verb in ("ingest", "open", "apply", "lineage", "search", "versions", "validate", "connect", "using"):
        assert verb in names


def test_context_repr_hides_the_database_password() -> None:
    """Printing a context never shows catalog credentials."""
    lib = connect(catalog_url="postgresql+psycopg://user:secret@db.example:5432/cat")
    assert "secret" not in repr(lib) and "user" in repr(lib)


def test_cli_with_catalog_down_prints_one_coded_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL that does not answer at start-up: one JSON document with CATALOG_UNAVAILABLE and exit 1,
    no traceback, nothing published in the store."""
    write_tif(tmp_path / "a.tif", seed=8)
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMAGELIB_STORE", raising=False)
    monkeypatch.setenv("IMAGELIB_CATALOG", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    for args in (
        ["ingest", str(tmp_path / "a.tif"), "--namespace", "ns", "--dataset", "ds"],
        ["versions", "ns/ds"],
    ):
        result = CliRunner().invoke(app, [*args, "--json"])
        body = json.loads(result.stdout)  # exactly one JSON document
        assert result.exit_code == 1, result.stdout
        assert body["error"]["code"] == "CATALOG_UNAVAILABLE"
        assert "Traceback" not in result.stdout
    assert not (tmp_path / "home" / "store" / "versions").exists()


def test_cli_with_store_unreachable_prints_one_coded_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 endpoint that refuses connections: STORAGE_ERROR as one JSON document, exit 1, no row."""
    write_tif(tmp_path / "a.tif", seed=9)
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMAGELIB_CATALOG", raising=False)
    monkeypatch.setenv("IMAGELIB_STORE", "s3://bucket/store")
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
    }.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(
        app, ["ingest", str(tmp_path / "a.tif"), "--namespace", "ns", "--dataset", "ds", "--json"]
    )
    body = json.loads(result.stdout)
    assert result.exit_code == 1 and body["error"]["code"] == "STORAGE_ERROR", result.stdout
    assert imagelib.versions("ns", "ds", lib=connect(tmp_path / "home")) == []


@pytest.mark.parametrize("value", ["lots", "1e9", "-5", "١٢"])
def test_malformed_numeric_setting_is_one_coded_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """IMAGELIB_MAX_PIXELS that is not a whole number of ASCII digits: the CLI answers one JSON document
    with USAGE naming the variable and exits 2 (before: an uncoded ValueError for some, a silent
    int('١٢') == 12 for others)."""
    write_tif(tmp_path / "a.tif", seed=9)
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IMAGELIB_MAX_PIXELS", value)
    result = CliRunner().invoke(
        app, ["ingest", str(tmp_path / "a.tif"), "--namespace", "n", "--dataset", "d", "--json"]
    )
    error = json.loads(result.stdout)["error"]
    assert result.exit_code == 2, result.stdout
    assert error["code"] == "USAGE" and error["field"] == "IMAGELIB_MAX_PIXELS" and value in error["message"]


def test_cli_ingest_freezes_import_objects_only_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest command keeps the import-time objects out of the collector during the work (a CLI
    speed-up) and gives them back afterwards, even when the ingest fails: an in-process caller's
    cyclic garbage stays collectable."""
    import gc

    import imagelib.ingestion

    seen: list[int] = []
    real = imagelib.ingestion.ingest

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(gc.get_freeze_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(imagelib.ingestion, "ingest", spy)
    monkeypatch.setenv("IMAGELIB_HOME", str(tmp_path / "home"))
    write_tif(tmp_path / "a.tif", seed=10)
    ok = CliRunner().invoke(app, ["ingest", str(tmp_path / "a.tif"), "--namespace", "n", "--dataset", "d"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(
        app, ["ingest", str(tmp_path / "none.tif"), "--namespace", "n", "--dataset", "d"]
    )
    assert bad.exit_code != 0
    assert len(seen) == 2 and all(count > 10_000 for count in seen)
    assert gc.get_freeze_count() == 0
