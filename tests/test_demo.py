"""The README's main command: ``imagelib demo`` builds everything it says, end to end (without serving)."""

from __future__ import annotations

from pathlib import Path

import imagelib
from imagelib.demo import run_demo


def test_demo_ingests_filters_and_writes_a_viewer(home: Path) -> None:
    summary = run_demo(serve=False)
    assert {"RGB.byte.tif", "shade.tif", "s_1_t_1_c_1_z_1.ome.tiff"} <= set(summary["versions"])
    assert "two-subs.h5" not in summary["versions"]  # ambiguous container: refused with a coded report
    first = summary["versions"]["RGB.byte.tif"]
    assert imagelib.lineage(summary["derived"])["ancestors"][0]["version"] == first
    viewer = Path(summary["viewer"])
    assert (viewer / "index.html").exists() and (viewer / f"{first}.dzi").exists()
    tiles = list((viewer / f"{first}_files").rglob("*.jpg"))
    levels = {t.parent.name for t in tiles}
    assert "0" in levels and "10" in levels  # 1×1 top level through full resolution (791 px wide)
    assert all(t.stat().st_size > 0 for t in tiles)
    assert run_demo(serve=False)["versions"] == summary["versions"]  # rerun: same content-addressed IDs
