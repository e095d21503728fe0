"""Pre-built pyramids written tile by tile through a thread pool (encoders release the GIL): DZI
(``<name>.dzi`` + ``<name>_files/<level>/<col>_<row>.<fmt>``) and XYZ (``<z>/<x>/<y>.<fmt>``)."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from imagelib.multiscale import CHUNK
from imagelib.tiling.cache import LruCache
from imagelib.tiling.forked import can_fork, run_forked, tile_bar
from imagelib.tiling.grid import DziGrid
from imagelib.tiling.render import Renderer
from imagelib.tiling.sink import TileWriter
from imagelib.tiling.source import StoredPlane

Job = tuple[str, Callable[[], bytes]]


def run(
    jobs: Iterable[Job], sink: TileWriter, total: int, progress: bool = False, workers: int | None = None
) -> int:
    """Render (and write) every job with a bounded queue of futures; return the number written.

    ``workers`` render (default: one per core): forked processes where :func:`forked.can_fork` allows
    and the sink is ``forkable`` (a folder) or ``ordered``, else threads. An ``ordered`` writer (a packed
    archive) gets the tiles from this process in job order; a plain sink is written by the renderers."""
    workers = workers or os.cpu_count() or 1
    if (sink.forkable or sink.ordered) and can_fork(workers):
        return run_forked(list(jobs), sink.write, workers, progress, ordered=sink.ordered)
    bar = tile_bar(total, progress)
    pending: deque[Future[tuple[str, bytes] | None]] = deque()
    done = 0

    def finish() -> None:
        nonlocal done
        result = pending.popleft().result()
        if result is not None:
            sink.write(*result)
        done += 1
        bar.update()

    with ThreadPoolExecutor(workers) as pool:
        for rel, render in jobs:
            if sink.ordered:
                pending.append(pool.submit(lambda r=rel, f=render: (r, f())))
            else:
                pending.append(pool.submit(lambda r=rel, f=render: sink.write(r, f())))
            while len(pending) > 8 * workers:
                finish()
        while pending:
            finish()
    bar.close()
    return done


#: chunk columns per column group of the DZI walk: the decoded-chunk working set is about
#: ``(GROUP_CHUNKS + 1) × 3`` chunks per band whatever the image size; the chunks of the column a
#: group's last tiles overlap are decoded twice (``1 / GROUP_CHUNKS`` extra decoding)
GROUP_CHUNKS = 4


def dzi_jobs(renderer: Renderer, grid: DziGrid, name: str, fmt: str) -> Iterator[Job]:
    """Every DZI tile, full resolution first; each level in column groups ``GROUP_CHUNKS`` stored chunks
    wide, row by row inside a group, so the chunks in use stay a few per band at any image width."""
    group_px = GROUP_CHUNKS * CHUNK
    for level in range(grid.levels - 1, -1, -1):
        cols, rows = grid.tile_counts(level)
        per_group = max(1, group_px // grid.tile_size)
        for first in range(0, cols, per_group):
            for row in range(rows):
                for col in range(first, min(first + per_group, cols)):
                    yield (
                        f"{name}_files/{level}/{col}_{row}.{fmt}",
                        lambda lv=level, c=col, r=row: renderer.dzi(grid, lv, c, r, fmt),
                    )


def bounded(renderer: Renderer) -> Renderer:
    """The renderer reading through its own decoded-chunk cache sized for :func:`dzi_jobs`' working set,
    not the context's shared one (256 MiB): export memory stays flat in image size."""
    plane = renderer.plane
    if not isinstance(plane, StoredPlane):
        return renderer
    chunk = CHUNK * CHUNK * plane.dtype.itemsize * len(plane.leads)
    own = copy.copy(plane)
    own.chunks = LruCache((GROUP_CHUNKS + 1) * 3 * chunk)
    return dataclasses.replace(renderer, plane=own)


def write_dzi(
    renderer: Renderer,
    sink: TileWriter,
    name: str,
    fmt: str = "jpg",
    tile_size: int = 254,
    overlap: int = 1,
    progress: bool = False,
    workers: int | None = None,
) -> DziGrid:
    """Write a DZI pyramid of the renderer's plane; return its grid."""
    grid = renderer.dzi_grid(tile_size, overlap)
    renderer = bounded(renderer)
    run(dzi_jobs(renderer, grid, name, fmt), sink, grid.total_tiles(), progress, workers)
    sink.write(f"{name}.dzi", grid.xml(fmt))
    return grid


def write_xyz(
    renderer: Renderer, sink: TileWriter, fmt: str = "png", progress: bool = False, workers: int | None = None
) -> tuple[int, int]:
    """Write XYZ WebMercatorQuad tiles; return the zoom range."""
    grid = renderer.xyz_grid
    jobs = (
        (f"{z}/{x}/{y}.{fmt}", lambda z=z, x=x, y=y: renderer.xyz(grid, z, x, y, fmt))
        for z, x, y in grid.tiles()
    )
    run(jobs, sink, grid.total_tiles(), progress, workers)
    return grid.minzoom, grid.maxzoom
