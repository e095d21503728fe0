"""OME-XML (the ImageDescription of an OME-TIFF) parsed with ``ome-types``, imported only for OME files.

A file whose description has an ``<OME>`` root claims to be OME-TIFF. When that XML does not parse, the
pixels are still read, the format stays ``ome-tiff`` (what the file claims) and a ``METADATA_INVALID``
warning says the physical pixel sizes and channel names are lost; validation makes it an error when the
rule set allows only ``ome-tiff``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from imagelib.formats.meta import RasterMeta

# the root element, with or without a namespace prefix (``<OME ...>``, ``<ome:OME ...>``)
OME_ROOT = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?OME[\s>/]")
# OME length units → micrometres (OME's default unit); other units keep the file's value
TO_MICROMETRE = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


def claims_ome(description: str | None) -> bool:
    """True when a TIFF ImageDescription holds an OME-XML root element (parsed or not)."""
    return bool(description) and OME_ROOT.search(description[:65536]) is not None


@dataclass(frozen=True)
class OmeFacts:
    """What imagelib takes from the first OME Image: physical sizes (µm) and channel names."""

    spacing: tuple[tuple[str, float], ...]
    channel_names: tuple[str | None, ...]


@lru_cache(maxsize=16)
def parse_ome(xml: str) -> OmeFacts | str:
    """Parse OME-XML with ome-types (cached: a 300 kB description takes ~0.3 s); an error text on failure."""
    try:
        import ome_types

        pixels = ome_types.from_xml(xml, validate=False).images[0].pixels
    except Exception as exc:  # an XML syntax error, a schema violation, no Image: the claims are unusable
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {text[:200]}"
    return OmeFacts(_spacing(pixels), tuple(channel.name for channel in pixels.channels))


def fill_ome(xml: str, meta: RasterMeta, bands: int | None) -> None:
    """Physical sizes (µm) and channel names of the first OME Image into ``meta``; warn if unparseable."""
    facts = parse_ome(xml)
    if isinstance(facts, str):
        meta.warn(
            "METADATA_INVALID",
            f"OME-XML cannot be parsed ({facts}); physical pixel sizes, channel names and axis meanings are "
            "lost (pages of equal shape are read as a z stack)",
            "ome_xml",
            ("spacing", "band_names"),
        )
        return
    meta.spacing = dict(facts.spacing) or None
    names = facts.channel_names
    if bands and len(names) == bands and any(names):
        meta.band_names = [name or f"b{i + 1}" for i, name in enumerate(names)]


def _spacing(pixels: Any) -> tuple[tuple[str, float], ...]:
    spacing: list[tuple[str, float]] = []
    for axis in ("z", "y", "x"):
        value = getattr(pixels, f"physical_size_{axis}", None)
        if value is None:
            continue
        unit = getattr(getattr(pixels, f"physical_size_{axis}_unit", None), "value", "µm")
        spacing.append((axis, float(value) * TO_MICROMETRE.get(unit, 1.0)))
    return tuple(spacing)
