"""What lineage shows of a stitch: the solved positions and a summary of the registration report."""

from __future__ import annotations

from collections import Counter
from typing import Any


def report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Counts of the full report: tiles, edges accepted/rejected by reason, components, residuals."""
    edges = report.get("edges") or []
    tiles = report.get("tiles") or []
    residuals = [t["residual"] for t in tiles if t.get("residual") is not None]
    rejected = Counter(e.get("reason") for e in edges if not e.get("accepted"))
    return {
        "tiles": len(tiles),
        "edges": len(edges),
        "accepted": sum(bool(e.get("accepted")) for e in edges),
        "rejected": dict(sorted(rejected.items(), key=lambda kv: str(kv[0]))),
        "components": len(report.get("components") or []),
        "placed_by_model": sum(bool(t.get("placed_by_model")) for t in tiles),
        "threshold": report.get("threshold"),
        "model": report.get("model"),
        "max_tile_residual": max(residuals) if residuals else None,
        "notes": list(report.get("notes") or []),
    }


def lineage_record(saved: dict[str, Any]) -> dict[str, Any]:
    """The ``stitch`` field of ``lineage``: positions (px, layout order), model flags, report summary."""
    return {
        "positions": saved.get("positions", []),
        "placed_by_model": saved.get("placed_by_model", []),
        "report": report_summary(saved.get("report") or {}),
    }
