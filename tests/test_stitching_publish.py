"""Stitching stored tile versions: a derived version with lineage, idempotent; the CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

import imagelib
from imagelib import multiscale
from imagelib.cli import app
from imagelib.context import current
from imagelib.formats.lazy import is_tiled
from imagelib.stitching import Layout, register, stitch
from imagelib.stitching.synthetic import cut, rms_error, textured_field
from imagelib.stored import open_group
from imagelib.validation.content import iter_blocks

PARAMS = {"max_shift": 8, "threshold": 0.2}


@pytest.fixture
def tiles(home: Path, tmp_path: Path):
    """A 2×2 mosaic of 96×128 uint16 tiles ingested as four root versions (layout order)."""
    layout = Layout.grid((2, 2), (96, 128), 0.25)
    m = cut(textured_field(np.array(layout.mosaic_shape()) + 40, seed=91), layout, jitter=3, seed=92)
    versions = []
    for k, tile in enumerate(m.tiles):
        path = tmp_path / f"tile{k}.tif"
        tifffile.imwrite(path, tile)
        versions.append(imagelib.ingest(path, "lab", "tiles")["version"])
    return versions, layout, m


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_stitch_publishes_a_derived_version(home, tiles):
    versions, layout, m = tiles
    result = stitch(versions, layout, **PARAMS)
    assert result.version and result.parents == versions
    assert result.op["op"] == "stitch" and result.op["tiles"] == versions
    assert result.op["layout"] == layout.to_json() and result.op["params"]["threshold"] == 0.2
    rms, _ = rms_error(result.positions, m.truth)
    assert rms < 0.5
    # The stored mosaic is the lazy fusion of the same tiles, published as an OME-Zarr multiscale.
    again = register(m.tiles, layout, **PARAMS)
    assert np.array_equal(again.positions, result.positions)  # deterministic, bit for bit
    lazy = again.fuse()
    stored = imagelib.open(result.version)
    assert stored.dtype == np.uint16 and stored.shape == lazy.shape
    assert np.array_equal(stored.values, lazy.values)
    assert [v["version"] for v in imagelib.versions("lab", "tiles-mosaic")] == [result.version]
    saved = current().catalog.get_version(result.version)["attrs"]["stitch"]
    assert saved["positions"] == result.positions.tolist()
    assert saved["report"]["accepted"] == result.report["accepted"] == 4


def test_a_mosaic_wider_than_a_chunk_is_stored_in_z_order(home, tmp_path):
    """The fused mosaic declares its 1024² chunks, so storing it reads Z-order blocks (memory flat in the
    mosaic's width), and the stored levels equal the fusion and a two-pass pyramid of it."""
    layout = Layout.grid((1, 3), (96, 420), 0.1)
    m = cut(textured_field(np.array(layout.mosaic_shape()) + 40, seed=5), layout, jitter=2, seed=6)
    reg = register(m.tiles, layout, **PARAMS)
    lazy = reg.fuse()
    assert lazy.shape[-1] > 1024 and is_tiled(lazy.encoding, lazy.shape[-1])
    assert {len(index) for index, _ in iter_blocks(lazy)} == {2}  # y and x slices: Z-order blocks
    paths = []
    for k, tile in enumerate(m.tiles):
        paths.append(tmp_path / f"w{k}.tif")
        tifffile.imwrite(paths[-1], tile)
    versions = [imagelib.ingest(p, "lab", "wide")["version"] for p in paths]
    result = stitch(versions, layout, **PARAMS)
    group, _ = open_group(result.version)
    np.testing.assert_array_equal(group["0"][...], lazy.values)
    two_pass = multiscale.create(zarr.storage.MemoryStore(), lazy, {})
    two_pass["0"][...] = lazy.values
    multiscale.build_lower_levels(two_pass)
    assert len(group) == len(two_pass) == 4  # 1177 → 589 → 295 → 148 px wide
    for level in range(1, len(group)):
        np.testing.assert_array_equal(group[str(level)][...], two_pass[str(level)][...])


def test_same_call_twice_same_id_nothing_written(home, tiles):
    versions, layout, _ = tiles
    first = stitch(versions, layout, **PARAMS)
    before = _files(home / "store")
    second = stitch(versions, layout, **PARAMS)
    assert second.version == first.version and second.deduplicated
    assert np.array_equal(second.positions, first.positions)
    assert second.report == json.loads(json.dumps(first.report))
    assert _files(home / "store") == before
    # Other parameters are another operation, hence another version.
    assert stitch(versions, layout, **{**PARAMS, "blend": "max"}).version != first.version


def test_cli_stitch_and_lineage(home, tiles, tmp_path):
    versions, layout, _ = tiles
    layout_file = tmp_path / "layout.json"
    layout_file.write_text(json.dumps(layout.to_json()))
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(PARAMS))
    runner = CliRunner()
    out = runner.invoke(
        app, ["stitch", *versions, "--layout", str(layout_file), "--params", str(params_file), "--json"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert set(doc) == {"version", "parents", "op", "report"}
    assert doc["version"] == stitch(versions, layout, **PARAMS).version
    lineage = json.loads(runner.invoke(app, ["lineage", doc["version"], "--json"]).stdout)
    parents = {a["version"]: a["operation"] for a in lineage["ancestors"]}
    assert set(parents) == set(versions)
    assert all(op["op"] == "stitch" for op in parents.values())
    # Lineage also shows the solved positions and the report summary (same in Python and the CLI).
    result = stitch(versions, layout, **PARAMS)
    assert imagelib.lineage(doc["version"]) == lineage
    shown = lineage["stitch"]
    assert np.array_equal(np.array(shown["positions"]), result.positions)
    assert shown["placed_by_model"] == [False] * 4
    edges = result.report["edges"]
    assert shown["report"]["tiles"] == 4 and shown["report"]["edges"] == len(edges) == 4
    assert shown["report"]["accepted"] == sum(e["accepted"] for e in edges)
    assert sum(shown["report"]["rejected"].values()) == len(edges) - shown["report"]["accepted"]
    assert shown["report"]["threshold"] == 0.2 and shown["report"]["components"] == 1
    assert shown["report"]["max_tile_residual"] == max(t["residual"] for t in result.report["tiles"])
    assert "stitch" not in imagelib.lineage(versions[0])  # a tile is no mosaic
    # A layout that places three tiles for four versions: coded error, exit 1.
    three = Layout.grid((1, 3), (96, 128), 0.25)
    layout_file.write_text(json.dumps(three.to_json()))
    bad = runner.invoke(app, ["stitch", *versions, "--layout", str(layout_file), "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["error"]["code"] == "STITCH_LAYOUT_MISMATCH"


def test_stitch_job_on_the_queue(home, tiles):
    from imagelib.jobs import create_job, get_job
    from imagelib.queue.kinds import handlers
    from imagelib.queue.runner import run_job

    versions, layout, _ = tiles
    lib = current()
    payload = {"tiles": versions, "layout": layout.to_json(), "params": PARAMS}
    job_id = create_job(lib.catalog, "stitch", payload)
    run_job(lib, {"job": job_id, "kind": "stitch", "payload": payload}, final=True)
    done = get_job(lib.catalog, job_id)
    assert done["state"] == "succeeded" and done["progress"] == 1.0
    assert done["version"] == stitch(versions, layout, **PARAMS).version
    assert "stitch" in handlers  # a built-in kind: every worker runs it without --import
    # A missing tile version: the job fails with the core's coded error.
    missing = {**payload, "tiles": [*versions[:3], "0" * 32]}
    bad = create_job(lib.catalog, "stitch", missing)
    run_job(lib, {"job": bad, "kind": "stitch", "payload": missing}, final=True)
    failed = get_job(lib.catalog, bad)
    assert failed["state"] == "failed" and failed["error"]["code"] == "VERSION_NOT_FOUND"


def test_http_lineage_shows_the_solved_positions(home, tiles):
    from fastapi.testclient import TestClient

    from imagelib.api import ApiSettings, create_app

    versions, layout, _ = tiles
    result = stitch(versions, layout, **PARAMS)
    with TestClient(create_app(current(), settings=ApiSettings())) as client:
        mosaic = client.get(f"/v1/versions/{result.version}/lineage")
        tile = client.get(f"/v1/versions/{versions[0]}/lineage")
    assert mosaic.status_code == 200, mosaic.text
    assert mosaic.json()["stitch"] == imagelib.lineage(result.version)["stitch"]
    assert np.array_equal(np.array(mosaic.json()["stitch"]["positions"]), result.positions)
    assert tile.json()["stitch"] is None  # a tile is no mosaic
