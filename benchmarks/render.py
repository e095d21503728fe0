"""The tile renderer's pixel path, without the server: per-tile time of plain and filter-chain DZI tiles.

    python benchmarks/render.py [--size 8192] [--rounds 15] [--tiles 36] [--baseline HEAD]

Renders full-resolution DZI tiles (254 + 1-pixel overlap: 256² inside, 255² on the edges) of a synthetic
``size²`` RGB uint8 plane held in memory (the ingest benchmark's ramp + noise, so reads cost a slice, as
with a warm chunk cache) through :class:`imagelib.tiling.render.Renderer`: without a chain and with the
3-op chains of ``benchmarks/service.py``. Per configuration it times the pixel path (read → filters →
8-bit, ``pixels``) and the encoded ``jpg``/``webp`` tile.

With ``--baseline REF`` the same measurement runs in a second process on a copy of the tree whose
pixel-path modules (``PIXEL_PATH``) are those of git ``REF``; the two processes take turns round by
round (a loaded machine slows both alike) and the script checks that both produce the same bytes for
every tile. Prints one JSON document (medians in ms per tile).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from service import CHAINS  # noqa: E402  (the service benchmark's chains: band_scale, gaussian, gamma)

CONFIGS = {"plain": None, "chain3_s1": CHAINS[0], "chain3_s1.5": CHAINS[1]}
STEPS = ("pixels", "jpg", "webp")


def make_plane(size: int) -> Any:
    """A ``size²`` RGB uint8 plane in memory: ramp + row pattern + 5 bits of noise (as benchmarks/ingest)."""
    from imagelib.tiling.source import MemoryPlane

    rng = np.random.default_rng(0)
    ramp = (np.arange(size, dtype=np.uint32) % 251).astype(np.uint8)
    data = np.broadcast_to(ramp, (3, size, size)).copy()
    data += (np.arange(size, dtype=np.uint32) % 7).astype(np.uint8)[None, :, None]
    data += rng.integers(0, 32, data.shape, dtype=np.uint8)
    return MemoryPlane(data, {"dims": ["band", "y", "x"]})


def worker(size: int, count: int) -> None:
    """Serve rounds on stdin/stdout: each ``round`` line → one JSON line of per-tile times and digests."""
    from imagelib.tiling.encode import encode
    from imagelib.tiling.render import Renderer
    from imagelib.tiling.scale import to_uint8

    plane = make_plane(size)
    renderers = {name: Renderer(plane, chain) for name, chain in CONFIGS.items()}
    grid = renderers["plain"].dzi_grid()
    level = grid.levels - 1
    cols, rows = grid.tile_counts(level)
    side = max(int(count**0.5), 2)
    # an interior block plus the last column and row (edge tiles: 255 wide/high, reflect at the edge)
    tiles = [(c, r) for r in range(3, 3 + side) for c in range(3, 3 + side)]
    tiles += [(cols - 1, r) for r in range(side)] + [(c, rows - 1) for c in range(side)]
    for r in renderers.values():  # warm-up: imports, cached properties
        r.dzi(grid, level, 0, 0, "jpg")
    import imagelib

    print(json.dumps({"ready": True, "tiles": len(tiles), "imagelib": imagelib.__file__}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        out: dict[str, Any] = {}
        for name, r in renderers.items():
            times = {step: [] for step in STEPS}
            digest = hashlib.sha256()
            for c, row in tiles:
                window = grid.window(level, c, row)
                t0 = time.perf_counter()
                img = to_uint8(r.pixels(grid.shrink(level), window), r.scaling)
                t1 = time.perf_counter()
                jpg = encode(img, "jpg", r.encoding)
                t2 = time.perf_counter()
                webp = encode(img, "webp", r.encoding)
                t3 = time.perf_counter()
                times["pixels"].append(t1 - t0)
                times["jpg"].append(t2 - t0)  # whole tile: pixels + encode
                times["webp"].append(t3 - t2 + t1 - t0)
                for part in (img.tobytes(), jpg, webp):
                    digest.update(part)
            out[name] = {"times": times, "sha256": digest.hexdigest()}
        print(json.dumps(out), flush=True)


def start(pythonpath: Path, size: int, count: int) -> subprocess.Popen:
    """A worker process importing ``imagelib`` from ``pythonpath``."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", "--size", str(size), "--tiles", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=pythonpath,
    )
    ready = json.loads(proc.stdout.readline())
    if not Path(ready["imagelib"]).is_relative_to(pythonpath):  # e.g. an editable install took precedence
        proc.kill()
        raise SystemExit(f"worker imported {ready['imagelib']}, not the copy under {pythonpath}")
    return proc


#: The pixel-path modules: ``--baseline`` takes these from the ref, everything else from the working tree.
PIXEL_PATH = (
    "imagelib/tiling/render.py",
    "imagelib/tiling/scale.py",
    "imagelib/filters/chain.py",
    "imagelib/filters/lazy.py",
    "imagelib/filters/ops_band.py",
)


def export(ref: str, into: Path) -> Path:
    """A copy of the working tree's ``imagelib`` under ``into`` with the pixel-path modules as of git
    ``ref`` (read with ``git show``; the working tree is not touched)."""
    shutil.copytree(ROOT / "imagelib", into / "imagelib", ignore=shutil.ignore_patterns("__pycache__"))
    for path in PIXEL_PATH:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:{path}"], capture_output=True, check=True
        ).stdout
        (into / path).write_bytes(text)
    return into


def main() -> None:
    """Run the rounds and print the medians (and the baseline's, with the byte comparison)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tiles", type=int, default=36, help="interior tiles (a square block); plus edges")
    parser.add_argument("--baseline", default=None, help="git ref to compare with, e.g. HEAD")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.size, args.tiles)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"current": start(ROOT, args.size, args.tiles)}
        if args.baseline:
            sides = {"baseline": start(export(args.baseline, Path(tmp)), args.size, args.tiles), **sides}
        times: dict[str, dict[str, dict[str, list[float]]]] = {s: {} for s in sides}
        digests: dict[str, dict[str, str]] = {s: {} for s in sides}
        for _ in range(args.rounds):
            for side, proc in sides.items():
                proc.stdin.write("round\n")
                proc.stdin.flush()
                for name, result in json.loads(proc.stdout.readline()).items():
                    for step, values in result["times"].items():
                        times[side].setdefault(name, {}).setdefault(step, []).extend(values)
                    digests[side][name] = result["sha256"]
        for proc in sides.values():
            proc.stdin.close()
            proc.wait()
    report: dict[str, Any] = {
        side: {
            name: {step: round(1e3 * float(np.median(v)), 3) for step, v in steps.items()}
            for name, steps in per.items()
        }
        for side, per in times.items()
    }
    if args.baseline:
        report["identical_bytes"] = digests["baseline"] == digests["current"]
    report["setup"] = {"size": args.size, "rounds": args.rounds, "baseline": args.baseline}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
