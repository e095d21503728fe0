"""A stitch job on the real local queue reports one progress bar over registration and fusion."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile

import imagelib
from imagelib.context import Library
from imagelib.queue import open_queue, runner
from imagelib.queue.kinds import STITCH_REGISTRATION_SHARE
from imagelib.stitching import Layout, register
from imagelib.stitching.synthetic import cut, textured_field
from tests.queue_support import wait_finished

TILE = 600  # 2×2 tiles of 600² at 10 % overlap: a ~1140² mosaic, i.e. 2×2 fused chunks of 1024²


@pytest.fixture
def lib(home: Path) -> Any:
    """A library context on the test's fresh home."""
    library = Library()
    yield library
    library.close()


def _ingest_tiles(tmp_path: Path, lib: Library) -> tuple[list[str], Layout]:
    layout = Layout.grid((2, 2), (TILE, TILE), 0.1)
    m = cut(textured_field(np.array(layout.mosaic_shape()) + 40, seed=31), layout, jitter=4, seed=32)
    versions = []
    for k, tile in enumerate(m.tiles):
        path = tmp_path / f"tile{k}.tif"
        tifffile.imwrite(path, tile)
        versions.append(imagelib.ingest(path, "lab", "tiles", lib=lib)["version"])
    return versions, layout


def _record_progress(lib: Library) -> list[float]:
    """Every progress value written to the jobs table, in order, seen on the catalog's own engine."""
    seen: list[float] = []

    def before_execute(conn: Any, clause: Any, *args: Any) -> None:
        if isinstance(clause, sa.Update) and clause.table.name == "jobs":
            params = clause.compile().params
            if params.get("progress") is not None:
                seen.append(float(params["progress"]))

    sa.event.listen(lib.catalog.engine, "before_execute", before_execute)
    return seen


def test_stitch_job_progress_moves_through_registration_then_fusion(
    lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions, layout = _ingest_tiles(tmp_path, lib)
    edges = len(layout.neighbours())
    # Every progress call reaches the catalog (the half-second throttle would keep only a few).
    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 0.0)
    seen = _record_progress(lib)
    payload = {"tiles": versions, "layout": layout.to_json(), "params": {"max_shift": 10, "threshold": 0.2}}
    with open_queue("local") as queue:
        job = wait_finished(lib, queue.submit("stitch", payload, lib=lib), timeout=120)
    assert job["state"] == "succeeded", job["error"]
    mosaic = imagelib.open(job["version"], lib=lib)
    chunks = math.prod(math.ceil(n / 1024) for n in mosaic.shape)
    assert chunks == 4  # the case really has several chunks to count
    print("progress writes:", seen)
    assert seen == sorted(seen) and seen[-1] == job["progress"] == 1.0
    share = STITCH_REGISTRATION_SHARE
    registering = [v for v in seen if 0 < v <= share]
    fusing = [v for v in seen[:-1] if share < v <= 1]  # the last write is the runner's final 1.0
    assert registering == pytest.approx([share * k / edges for k in range(1, edges + 1)])
    assert fusing == pytest.approx([share + (1 - share) * k / chunks for k in range(1, chunks + 1)])


def test_fusion_counts_each_chunk_once_in_order() -> None:
    layout = Layout.grid((2, 2), (96, 96), 0.2)
    m = cut(textured_field(np.array(layout.mosaic_shape()) + 40, seed=33), layout, jitter=2, seed=34)
    calls: list[tuple[int, int]] = []
    reg = register(m.tiles, layout, max_shift=6, threshold=0.2)
    mosaic = reg.fuse(chunks=(64, 64), on_chunk=lambda done, total: calls.append((done, total)))
    total = math.prod(math.ceil(n / 64) for n in mosaic.shape)
    first = mosaic.values
    again = mosaic.values  # a second read computes the chunks again: they are not counted twice
    assert np.array_equal(first, again) and np.array_equal(first, reg.fuse().values)
    assert calls == [(k, total) for k in range(1, total + 1)]
