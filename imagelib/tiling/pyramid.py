"""Pre-built pyramids written tile by tile through a thread pool (encoders release the GIL): DZI
(``<name>.dzi`` + ``<name>_files/<level>/<col>_<row>.<fmt>``) and XYZ (``<z>/<x>/<y>.<fmt>``)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from tqdm import tqdm

from imagelib.tiling.grid import DziGrid
from imagelib.tiling.render import Renderer
from imagelib.tiling.sink import TileWriter

Job = tuple[str, Callable[[], bytes]]


def run(
    jobs: Iterable[Job], sink: TileWriter, total: int, progress: bool = False, workers: int | None = None
) -> int:
    """Render (and write) every job with a bounded queue of futures; return the number written.

    ``workers`` threads render (default: one per core). An ``ordered`` writer (a packed archive) gets
    the tiles from this thread in job order; a plain sink is written from the render threads."""
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=total, unit="tile", disable=not progress, mininterval=0.5)
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


def dzi_jobs(renderer: Renderer, grid: DziGrid, name: str, fmt: str) -> Iterator[Job]:
    """Every DZI tile, full resolution first, row by row (each chunk row is decoded once)."""
    for level in range(grid.levels - 1, -1, -1):
        cols, rows = grid.tile_counts(level)
        for row in range(rows):
            for col in range(cols):
                yield (
                    f"{name}_files/{level}/{col}_{row}.{fmt}",
                    lambda lv=level, c=col, r=row: renderer.dzi(grid, lv, c, r, fmt),
                )


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
