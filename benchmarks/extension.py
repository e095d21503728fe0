"""The Jupyter server extension's tile latency vs ``render_tile`` called directly (issue 10: overhead
≤ 2 ms p50 on cached chunks).

    python benchmarks/extension.py [--rounds 5]

Ingests ``RGB.byte.tif`` (718×791 RGB GeoTIFF, from ../shared/data) into a fresh IMAGELIB_HOME, starts a
real ``jupyter server`` with the extension (token auth, non-root base_url), warms the chunk caches of the
server and of this process by fetching every DZI tile of the top three levels once, then measures
sequential requests (one keep-alive connection, token header) against direct calls in this process:

* ``cached``: the same tiles again, PNG (tile cache hits on both sides: the pure serving overhead —
  routing, auth, ETag, thread hop, HTTP);
* ``render``: each request with a chain of its own (``gaussian`` with a distinct sigma), JPEG: chunks
  cached, tile not, so each request renders (the direct side renders the same chain, interleaved).

Prints one JSON document: p50/p99 per side and case, the p50 overhead (extension − direct), and the
latency of Jupyter Server's own ``/api/status`` on the same connection (the floor of any extension request).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine
from imagelib_jupyter.launch import JupyterServer

import imagelib
from imagelib.tiling import render_tile, renderer_for

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TOKEN = "bench-token"


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50 and p99 of milliseconds."""
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(cuts[98], 3), "n": len(ms)}


def timed(call: Callable[[], Any]) -> float:
    """Milliseconds of one call."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Run the benchmark; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the tile set per case")
    args = parser.parse_args()
    host = machine()
    with tempfile.TemporaryDirectory(prefix="imagelib-ext-bench-") as tmp:
        home = Path(tmp) / "home"
        lib = imagelib.connect(home)
        version = imagelib.ingest(DATA / "RGB.byte.tif", "bench", "rgb", lib=lib)["version"]
        grid = renderer_for(version, lib=lib).dzi_grid()
        tiles = [
            (level, col, row)
            for level in range(grid.levels - 3, grid.levels)
            for col in range(grid.tile_counts(level)[0])
            for row in range(grid.tile_counts(level)[1])
        ]
        env = {"IMAGELIB_HOME": str(home), "IMAGELIB_STORE": None, "IMAGELIB_CATALOG": None}
        with JupyterServer(Path(tmp), token=TOKEN, base_url="/user/bench/", env=env) as server:
            client = httpx.Client(headers={"Authorization": f"token {TOKEN}"}, timeout=60)
            base = f"{server.url}imagelib/tiles/{version}_files"

            def fetch(tile: tuple[int, int, int], fmt: str, chain: str = "") -> None:
                response = client.get(f"{base}/{tile[0]}/{tile[1]}_{tile[2]}.{fmt}{chain}")
                assert response.status_code == 200, response.text

            for tile in tiles:  # warm: chunk caches + tile caches of both sides
                fetch(tile, "png")
                render_tile(version, *tile, fmt="png", lib=lib)
            ext_cached, direct_cached, floor = [], [], []
            status = f"{server.url}api/status"
            for _ in range(args.rounds):
                for tile in tiles:
                    # Jupyter Server's own smallest authenticated API answer: the floor any extension pays
                    floor.append(timed(lambda: client.get(status).raise_for_status()))
                    ext_cached.append(timed(lambda t=tile: fetch(t, "png")))
                    direct_cached.append(timed(lambda t=tile: render_tile(version, *t, fmt="png", lib=lib)))
            ext_render, direct_render = [], []
            for i, tile in enumerate(tiles * args.rounds):
                chain = [{"op": "gaussian", "sigma": round(1.0 + 0.001 * i, 3)}]
                query = f"?chain={quote(json.dumps(chain))}"
                ext_render.append(timed(lambda t=tile, q=query: fetch(t, "jpg", q)))
                direct_render.append(
                    timed(lambda t=tile, c=chain: render_tile(version, *t, fmt="jpg", chain=c, lib=lib))
                )
            client.close()
    result: dict[str, Any] = {"machine": host, "version": version, "tiles": len(tiles)}
    for case, ext, direct in (("cached", ext_cached, direct_cached), ("render", ext_render, direct_render)):
        e, d = percentiles(ext), percentiles(direct)
        result[case] = {"extension": e, "direct": d, "overhead_p50_ms": round(e["p50_ms"] - d["p50_ms"], 3)}
    result["jupyter_api_status"] = percentiles(floor)  # what the server costs before any extension code
    result["target"] = "overhead p50 <= 2 ms"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
