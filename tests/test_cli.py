"""The CLI contract: one JSON document on stdout with --json, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagelib.cli import app
from tests.conftest import DATA

runner = CliRunner()


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_validate_exit_codes(tmp_path: Path) -> None:
    assert run("validate", str(DATA / "byte.tif"))[0] == 0
    code, report = run("validate", str(DATA / "two-subs.h5"))
    assert code == 1 and report["errors"][0]["code"] == "DATASET_AMBIGUOUS"
    rules = tmp_path / "r.json"
    rules.write_text('{"nonsense": 1}')
    code, body = run("validate", str(DATA / "byte.tif"), "--rules", str(rules))
    assert code == 2 and body["error"]["code"] == "RULES_INVALID"


def test_ingest_versions_lineage_filter_search(home: Path, tmp_path: Path) -> None:
    code, ingested = run("ingest", str(DATA / "shade.tif"), "--namespace", "cli", "--dataset", "shade")
    assert code == 0
    assert {"version", "namespace", "dataset", "shape", "dtype", "crs", "bounds", "checksum"} <= set(ingested)
    assert ingested["shape"] == [1, 1024, 1024] and ingested["crs"] == "EPSG:3857"
    code, listed = run("versions", "cli/shade")
    assert code == 0 and [v["version"] for v in listed] == [ingested["version"]]
    chain = tmp_path / "chain.json"
    chain.write_text(json.dumps([{"op": "median", "size": 3}]))
    code, derived = run("filter", ingested["version"], "--chain", str(chain))
    assert (
        code == 0
        and derived["parents"] == [ingested["version"]]
        and derived["op"]["chain"][0]["op"] == "median"
    )
    code, lineage = run("lineage", derived["version"])
    assert code == 0 and lineage["ancestors"][0]["version"] == ingested["version"]
    code, found = run("search", "--bbox", "-106.6,39.6,-106.4,39.8")
    assert code == 0 and {v["version"] for v in found} == {ingested["version"], derived["version"]}
    code, none = run("search", "--bbox", "0,0,1,1")
    assert code == 0 and none == []


def test_invalid_ingest_exit_1_with_report(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "e.tif"
    empty.write_bytes(b"")
    code, report = run("ingest", str(empty), "--namespace", "cli", "--dataset", "bad")
    assert code == 1 and report["valid"] is False and report["errors"][0]["code"] == "FILE_EMPTY"


def test_usage_errors_exit_2(home: Path) -> None:
    assert run("versions", "no-slash")[0] == 2
    code, body = run("search", "--bbox", "1,2,3")
    assert code == 2 and body["error"]["code"] == "USAGE"
    code, body = run("lineage", "not-an-id")
    assert code == 2 and body["error"]["field"] == "version"
    code, body = run("ingest", str(DATA / "byte.tif"), "--namespace", "../etc", "--dataset", "x")
    assert code == 2 and body["error"]["code"] == "DATASET_NAME_INVALID"


def test_ingest_imports_without_the_collector_and_restores_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest command imports its readers with the cyclic collector paused (its full collections
    walked every import-time object) and leaves it as it found it: on after an ingest, and still off
    for a caller that had switched it off, errors included."""
    import gc

    import imagelib.formats.registry as registry

    seen: list[bool] = []
    real = registry.readers

    def spy() -> object:
        seen.append(gc.isenabled())
        return real()

    monkeypatch.setattr(registry, "readers", spy)
    assert gc.isenabled()
    code, _ = run("ingest", str(DATA / "byte.tif"), "--namespace", "cli", "--dataset", "gc")
    assert code == 0 and seen[0] is False and gc.isenabled()  # the command's call; later ones open the file
    before = len(seen)
    gc.disable()
    try:
        code, _ = run("ingest", str(DATA / "nothing-here.tif"), "--namespace", "cli", "--dataset", "gc")
        assert code != 0 and seen[before] is False and not gc.isenabled()
    finally:
        gc.enable()
