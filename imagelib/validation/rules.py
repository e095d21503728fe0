"""Validation rule sets: a YAML/JSON file parsed into a strict pydantic model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagelib.errors import ImagelibError


class RuleSet(BaseModel):
    """Schema and content rules; every field is optional and unset means "no constraint"."""

    model_config = ConfigDict(extra="forbid")

    formats: list[str] | None = Field(None, description="allowed formats, e.g. [geotiff, cog, ome-tiff]")
    dims: list[list[str]] | None = Field(
        None, description='allowed layouts, e.g. [["y","x"],["band","y","x"]]'
    )
    min_resolution: float | None = Field(None, gt=0, description="smallest allowed pixel size (CRS units)")
    max_resolution: float | None = Field(None, gt=0, description="largest allowed pixel size (CRS units)")
    crs_required: bool = False
    allowed_crs: list[str] | None = Field(None, description='e.g. ["EPSG:4326", "EPSG:32618"]')
    dtypes: list[str] | None = Field(None, description="allowed numpy dtype names")
    min_bands: int | None = Field(None, ge=1)
    max_bands: int | None = Field(None, ge=1)
    nodata_required: bool = False
    value_range: tuple[float, float] | None = Field(None, description="[lo, hi] inclusive, nodata excluded")
    nan: Literal["allow", "forbid"] = "allow"
    inf: Literal["allow", "forbid"] = "allow"
    max_pixels: int | None = Field(None, ge=1, description="pixel-bomb limit (elements)")
    required_metadata: list[str] = Field(
        default_factory=list, description="attrs that must be set, e.g. [time]"
    )
    read_through: bool = Field(True, description="read every chunk (catches truncation, NaN, range)")


def load_rules(path: str | Path | None) -> RuleSet:
    """Parse a YAML/JSON rule file (JSON is YAML); no path gives the permissive default."""
    if path is None:
        return RuleSet()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return RuleSet.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ImagelibError(f"rule set {path}: {exc}", code="RULES_INVALID", field="rules") from exc
