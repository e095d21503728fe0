"""Checks that a file's georeferencing claims are possible: the CRS exists, the coordinates fit it.

A CRS name that does not exist is ``CRS_INVALID`` (GDAL would guess one); coordinates the named CRS cannot
hold — latitudes of 100 000, a UTM extent on the other side of the world, points off a geostationary
disk — are ``CRS_INCONSISTENT``. Plausibility uses the CRS's own area of use (pyproj), so it holds for
every CRS, not only EPSG:4326. Everything here runs once per open, never per block.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagelib.errors import InputError

# GeoKeyDirectory (TIFF tag 34735) keys that name an EPSG CRS; 0 is "undefined", 32767 "user-defined".
GEO_KEY_DIRECTORY = 34735
EPSG_GEOKEYS = {2048: "GeographicTypeGeoKey", 3072: "ProjectedCSTypeGeoKey"}
USER_DEFINED = 32767
SAMPLES = 5  # points per side of the extent that are projected back to longitude/latitude
AREA_MARGIN_DEG = 20.0  # a projected extent may run past the CRS's area of use (zone edges), not far


def crs_label(crs: Any) -> str | None:
    """``AUTHORITY:CODE`` when the CRS has one, else WKT; None without a CRS."""
    if crs is None:
        return None
    auth = crs.to_authority()
    if auth:
        return f"{auth[0]}:{auth[1]}"
    return crs.to_wkt()


def geokey_epsg_codes(directory: Sequence[int]) -> dict[str, int]:
    """The EPSG codes a GeoKeyDirectory names inline (``{"ProjectedCSTypeGeoKey": 32618}``)."""
    values = list(directory)
    found: dict[str, int] = {}
    if len(values) < 4:
        return found
    count = values[3]
    for i in range(count):
        entry = values[4 + 4 * i : 8 + 4 * i]
        if len(entry) < 4:
            break
        key, location, _, value = entry
        # codes past 32767 are "private" in the spec, but GDAL still looks them up and then guesses
        if key in EPSG_GEOKEYS and location == 0 and value not in (0, USER_DEFINED):
            found[EPSG_GEOKEYS[key]] = int(value)
    return found


def check_geokeys(tags: Any, path: Path) -> None:
    """Refuse a GeoTIFF whose GeoKeys name an EPSG CRS that does not exist (``CRS_INVALID``)."""
    tag = tags.get(GEO_KEY_DIRECTORY)
    if tag is None:
        return
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    for key, code in geokey_epsg_codes(tag.value).items():
        try:
            CRS.from_epsg(code)
        except CRSError as exc:
            raise InputError(
                f"{path}: {key} names EPSG:{code}, which does not exist (a reader would have to guess)",
                code="CRS_INVALID",
                field="crs",
                found=f"EPSG:{code}",
            ) from exc


def check_plausible(crs: Any, bounds: Sequence[float], pixel: float, where: str) -> None:
    """Raise ``CRS_INCONSISTENT`` when the extent ``[left, bottom, right, top]`` cannot exist in ``crs``."""
    from pyproj import CRS, Transformer

    crs = CRS.from_user_input(crs)
    left, bottom, right, top = (float(v) for v in bounds)
    label = crs_label(crs)
    if crs.is_geographic and _in_degrees(crs):
        lon, lat = _grid(left, bottom, right, top)
        tol = abs(pixel) + 1e-6
        if (
            min(left, right) < -180 - tol
            or max(left, right) > 360 + tol
            or min(bottom, top) < -90 - tol
            or max(bottom, top) > 90 + tol
        ):
            raise _inconsistent(where, label, bounds, "longitudes/latitudes outside [-180, 360] × [-90, 90]")
    else:
        lon, lat = _to_lonlat(crs, Transformer, left, bottom, right, top, pixel)
        if lon.size == 0:
            raise _inconsistent(where, label, bounds, "no part of the extent maps to a place on the Earth")
    area = crs.area_of_use
    if area is not None and not _near_area(lon, lat, area):
        raise _inconsistent(
            where,
            label,
            bounds,
            f"the extent lies far outside the CRS's area of use ({area.name}: "
            f"{area.west}, {area.south}, {area.east}, {area.north})",
        )


def _in_degrees(crs: Any) -> bool:
    return all("degree" in (axis.unit_name or "") for axis in crs.axis_info[:2])


def _grid(left: float, bottom: float, right: float, top: float) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.linspace(left, right, SAMPLES), np.linspace(bottom, top, SAMPLES))
    return xs.ravel(), ys.ravel()


def _to_lonlat(
    crs: Any, transformer: Any, left: float, bottom: float, right: float, top: float, pixel: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sample points of the extent that project back to the Earth and forward to where they came from."""
    xs, ys = _grid(left, bottom, right, top)
    geodetic = crs.geodetic_crs or crs
    inverse = transformer.from_crs(crs, geodetic, always_xy=True)
    forward = transformer.from_crs(geodetic, crs, always_xy=True)
    with np.errstate(all="ignore"):
        lon, lat = (np.asarray(v, dtype="float64") for v in inverse.transform(xs, ys, errcheck=False))
        back_x, back_y = (np.asarray(v, dtype="float64") for v in forward.transform(lon, lat, errcheck=False))
        # a projection that wraps (Mercator beyond the pole) returns a place that maps somewhere else
        tol = max(abs(pixel), 1e-6 * max(abs(left), abs(right), abs(top), abs(bottom), 1.0))
        ok = (
            np.isfinite(lon)
            & np.isfinite(lat)
            & (np.abs(lat) <= 90)
            & (np.abs(back_x - xs) <= tol)
            & (np.abs(back_y - ys) <= tol)
        )
    return lon[ok], lat[ok]


def _near_area(lon: np.ndarray, lat: np.ndarray, area: Any) -> bool:
    """True when some sample point lies within the area of use widened by a margin."""
    west, south, east, north = area.west, area.south, area.east, area.north
    if east < west:  # the area crosses the antimeridian
        east += 360.0
    margin_x = max(AREA_MARGIN_DEG, east - west)
    margin_y = max(AREA_MARGIN_DEG, north - south)
    lons = np.concatenate([lon, lon + 360.0, lon - 360.0])
    lats = np.concatenate([lat, lat, lat])
    inside = (
        (lons >= west - margin_x)
        & (lons <= east + margin_x)
        & (lats >= south - margin_y)
        & (lats <= north + margin_y)
    )
    return bool(inside.any())


def _inconsistent(where: str, label: str | None, bounds: Sequence[float], why: str) -> InputError:
    return InputError(
        f"{where}: coordinates {list(map(float, bounds))} are impossible in {label}: {why}",
        code="CRS_INCONSISTENT",
        field="crs",
        expected=label,
        found=list(map(float, bounds)),
    )
