"""The typed metadata model every reader fills; ``DataArray.attrs`` is built from it by one ``to_attrs()``.

Untrustworthy metadata is never silent: a claim that contradicts the data is a coded error raised by the
reader; metadata lost while the pixels stay usable is a :class:`MetaWarning` in ``warnings``, naming the
attrs keys it cost (``lost``), so validation can make it an error when a rule needs those keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

#: Keys every opened array's attrs hold (None when unknown); the outward contract of the readers.
ATTR_KEYS = (
    "format",
    "crs",
    "crs_wkt",
    "transform",
    "bounds",
    "nodata",
    "band_names",
    "time",
    "georeferenced",
    "spacing",
    "address",
    "source_shape",
)

#: Keys present in attrs only when a reader set them (CF packing, Zarr fill value, warnings).
OPTIONAL_KEYS = ("time_end", "units", "scale_factor", "add_offset", "fill_value", "warnings")


@dataclass(frozen=True)
class MetaWarning:
    """Metadata a file carries but that could not be trusted; ``lost`` names the attrs keys left unset."""

    code: str
    message: str
    field: str
    lost: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The report item ``{"code","message","field","lost"}``."""
        return {"code": self.code, "message": self.message, "field": self.field, "lost": list(self.lost)}


@dataclass
class RasterMeta:
    """What a reader learned about a raster; ``extra`` keeps reader-specific keys as they are."""

    format: str
    crs: str | None = None
    crs_wkt: str | None = None
    transform: list[float] | None = None
    bounds: list[float] | None = None
    nodata: float | None = None
    band_names: list[str] = field(default_factory=list)
    time: str | None = None
    time_end: str | None = None
    georeferenced: bool = False
    spacing: dict[str, float] | None = None
    address: str | None = None
    source_shape: list[int] | None = None
    units: str | None = None
    scale_factor: float | None = None
    add_offset: float | None = None
    fill_value: float | None = None
    warnings: list[MetaWarning] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def warn(self, code: str, message: str, field: str, lost: tuple[str, ...] = ()) -> None:
        """Record a coded warning (metadata lost, pixels usable)."""
        self.warnings.append(MetaWarning(code, message, field, tuple(lost)))

    def to_attrs(self) -> dict[str, Any]:
        """The attrs dict downstream code reads: every :data:`ATTR_KEYS` key, optional keys when set."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("warnings", "extra")}
        attrs = {key: values[key] for key in ATTR_KEYS}
        attrs["georeferenced"] = bool(attrs["georeferenced"])
        attrs["band_names"] = list(attrs["band_names"] or [])
        for key in OPTIONAL_KEYS[:-1]:
            if values[key] is not None:
                attrs[key] = values[key]
        if self.warnings:
            attrs["warnings"] = [w.to_dict() for w in self.warnings]
        return {**attrs, **self.extra}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> RasterMeta:
        """Rebuild the model from attrs (a third-party reader's, or a stored version's)."""
        names = {f.name for f in fields(cls)} - {"warnings", "extra"}
        known = {k: v for k, v in attrs.items() if k in names}
        known.setdefault("format", "unknown")
        known["band_names"] = list(known.get("band_names") or [])
        warnings = [_warning(w) for w in attrs.get("warnings") or []]
        extra = {k: v for k, v in attrs.items() if k not in names and k != "warnings"}
        return cls(**known, warnings=warnings, extra=extra)


def _warning(item: MetaWarning | dict[str, Any]) -> MetaWarning:
    if isinstance(item, MetaWarning):
        return item
    return MetaWarning(
        item["code"], item.get("message", ""), item.get("field", ""), tuple(item.get("lost", ()))
    )


__all__ = ["ATTR_KEYS", "OPTIONAL_KEYS", "MetaWarning", "RasterMeta"]
