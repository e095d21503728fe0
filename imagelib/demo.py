"""``imagelib demo``: a guided local run on embedded defaults.

Ingests sample rasters (``../shared/data`` when present, else a generated GeoTIFF), shows validation,
the content-addressed versions and their lineage after a filter, builds the deep-zoom viewer of one
version and serves it on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

SAMPLES = (
    "RGB.byte.tif",
    "shade.tif",
    "20171025_2056.Cloud_Top_Height.nc#/HT",
    "s_1_t_1_c_1_z_1.ome.tiff",
    "two-subs.h5",
)


def say(text: str) -> None:
    """Narrate on stderr (stdout stays clean)."""
    typer.secho(text, err=True, fg=typer.colors.CYAN)


def sample_sources() -> list[str]:
    """Sample files from the shared corpus, or one generated GeoTIFF on a fresh machine without it."""
    for root in (Path.cwd() / "../shared/data", Path(__file__).resolve().parents[2] / "shared/data"):
        if (root / "MANIFEST.json").exists():
            return [str(root.resolve() / name) for name in SAMPLES]
    return [str(generated_geotiff())]


def generated_geotiff() -> Path:
    """A 2048×2048 3-band GeoTIFF with smooth structure (deterministic)."""
    import rasterio
    from rasterio.transform import from_origin

    from imagelib.config import settings

    path = settings().home / "demo-input" / "generated.tif"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:2048, 0:2048] / 2048.0
    bands = [np.sin(12 * x) * np.cos(9 * y), np.cos(20 * x * y), np.sin(7 * (x + y))]
    data = np.stack([((b + 1) * 127.5).astype(np.uint8) for b in bands])
    profile = {
        "driver": "GTiff",
        "width": 2048,
        "height": 2048,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 5000000, 10, 10),
        "tiled": True,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def run_demo(serve: bool = True, port: int = 8000) -> dict[str, Any]:
    """Run the guided demo; returns what it built (versions, viewer folder)."""
    import imagelib
    from imagelib.config import settings
    from imagelib.errors import ValidationFailed

    say(f"imagelib {imagelib.__version__} — home {settings().home}")
    versions: dict[str, str] = {}
    for source in sample_sources():
        name = Path(source.split("#")[0]).name
        report = imagelib.validate(source)
        if not report["valid"]:
            codes = ", ".join(e["code"] for e in report["errors"])
            say(f"  validate {name}: INVALID ({codes}) — {report['errors'][0]['message']}")
            continue
        try:
            result = imagelib.ingest(source, "demo", Path(name).stem.replace(".", "-"), progress=True)
        except ValidationFailed as exc:
            say(f"  ingest {name}: refused [{exc.code}]")
            continue
        versions[name] = result["version"]
        tag = " (already stored)" if result["deduplicated"] else ""
        say(
            f"  {name}: version {result['version']} {result['dims']} {result['shape']} {result['dtype']}{tag}"
        )
    first = next(iter(versions.values()))
    derived = imagelib.apply(first, [{"op": "gaussian", "sigma": 1.5}])
    say(f"  filtered {first} with a gaussian → {derived}")
    say("  lineage: " + json.dumps(imagelib.lineage(derived)["ancestors"][0]["operation"]))
    out = settings().home / "demo-viewer"
    viewer = build_viewer(first, out)
    summary = {"versions": versions, "derived": derived, "viewer": str(viewer) if viewer else None}
    print(json.dumps(summary, indent=2))
    if serve:
        serve_app(first, port)
    return summary


def build_viewer(version: str, out: Path) -> Path | None:
    """Export a self-contained deep-zoom viewer (DZI + OpenSeadragon) of a version, if tiling is installed."""
    try:
        from imagelib.tiling.export import export_embed
    except ImportError:
        say("  (tiling module not available: no viewer built)")
        return None
    folder = export_embed(version, out, scheme="dzi")
    say(f"  viewer written to {folder}")
    return Path(folder)


def serve_app(version: str, port: int) -> None:
    """Serve the Panel app on 127.0.0.1 opened on ``version`` until interrupted (its URL on stdout)."""
    from imagelib.viewer.serve import serve
    from imagelib.viewer.state import ViewState

    say(f"serving the imagelib viewer on port {port} (Ctrl-C to stop); the static export stays in the")
    say("  folder above (imagelib tile --embed)")
    try:
        serve(port, query=ViewState(version).to_query())
    except KeyboardInterrupt:
        say("stopped")
