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
from imagelib.tiling.sink import Sink

Job = tuple[str, Callable[[], bytes]]


def run(
    jobs: Iterable[Job], sink: Sink, total: int, progress: bool = False, workers: int | None = None
) -> int:
    """Render and write every job with a bounded queue of futures; return the number written."""
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=total, unit="tile", disable=not progress, mininterval=0.5)
    pending: deque[Future[None]] = deque()
    done = 0
    with ThreadPoolExecutor(workers) as pool:
        for rel, render in jobs:
            pending.append(pool.submit(lambda r=rel, f=render: sink.write(r, f())))
            while len(pending) > 8 * workers:
                pending.popleft().result()
                done += 1
                bar.update()
        while pending:
            pending.popleft().result()
            done += 1
            bar.update()
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
    sink: Sink,
    name: str,
    fmt: str = "jpg",
    tile_size: int = 254,
    overlap: int = 1,
    progress: bool = False,
) -> DziGrid:
    """Write a DZI pyramid of the renderer's plane; return its grid."""
    grid = renderer.dzi_grid(tile_size, overlap)
    run(dzi_jobs(renderer, grid, name, fmt), sink, grid.total_tiles(), progress)
    sink.write(f"{name}.dzi", grid.xml(fmt))
    return grid


def write_xyz(renderer: Renderer, sink: Sink, fmt: str = "png", progress: bool = False) -> tuple[int, int]:
    """Write XYZ WebMercatorQuad tiles; return the zoom range."""
    grid = renderer.xyz_grid
    jobs = (
        (f"{z}/{x}/{y}.{fmt}", lambda z=z, x=x, y=y: renderer.xyz(grid, z, x, y, fmt))
        for z, x, y in grid.tiles()
    )
    run(jobs, sink, grid.total_tiles(), progress)
    return grid.minzoom, grid.maxzoom
