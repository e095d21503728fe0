"""Search as a STAC API (core, collections, features, item-search with GET and POST and ``next`` links).

One collection per ``namespace/dataset`` (id ``namespace:dataset``: ``:`` is outside the name alphabet so
the id splits unambiguously); one item per version (``id`` = version ID) with geometry (``null`` when the
version is not georeferenced), datetime, ``proj:*`` fields and assets: the stored OME-Zarr, the DZI and
(georeferenced only) the XYZ template. Results are limited to the namespaces the caller may read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from imagelib.api.catalog import readable
from imagelib.api.deps import Audited, Service, audited, service
from imagelib.api.errors import responses
from imagelib.api.params import parse_bbox, parse_datetime
from imagelib.config import decimal
from imagelib.errors import NotFound, UsageError

STAC_VERSION = "1.0.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
GEOJSON = "application/geo+json"
MAX_LIMIT = 1000
SCAN_LIMIT = 100_000  # rows one search looks at before paging (filters below run on these)


class SearchBody(BaseModel):
    """The POST form of ``/stac/search``."""

    bbox: list[float] | None = Field(None, min_length=4, max_length=6)
    datetime: str | None = None
    collections: list[str] | None = None
    ids: list[str] | None = None
    limit: int = Field(10, ge=1, le=MAX_LIMIT)
    token: str | None = None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def collection_id(member: str) -> str:
    """``namespace/dataset`` → the collection id ``namespace:dataset``."""
    return member.replace("/", ":", 1)


def when(row: dict[str, Any]) -> datetime:
    """An item's datetime: the acquisition time, else when the version was made."""
    value = row.get("time_start") or row["created_at"]
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def item(row: dict[str, Any], base: str, collection: str | None = None) -> dict[str, Any]:
    """The STAC item of a catalog row (with ``datasets``)."""
    version, members = row["id"], row["datasets"]
    collection = collection or (collection_id(members[0]) if members else None)
    geo = row.get("west") is not None
    properties: dict[str, Any] = {
        "datetime": _iso(when(row)),
        "created": _iso(row["created_at"]),
        "proj:code": row["crs"] if (row.get("crs") or "").upper().startswith("EPSG:") else None,
        "proj:shape": list(row["shape"][-2:]),
        "imagelib:dims": row["dims"],
        "imagelib:dtype": row["dtype"],
        "imagelib:kind": row["kind"],
        "imagelib:datasets": members,
    }
    if row.get("bounds"):
        properties["proj:bbox"] = row["bounds"]
    if row.get("time_start") and row.get("time_end") and row["time_end"] != row["time_start"]:
        properties["start_datetime"], properties["end_datetime"] = (
            _iso(row["time_start"]),
            _iso(row["time_end"]),
        )
    assets: dict[str, Any] = {
        "zarr": {
            "href": f"{row['storage_url']}/image.zarr",
            "type": "application/vnd+zarr",
            "title": "OME-Zarr multiscale",
            "roles": ["data"],
        },
        "dzi": {
            "href": f"{base}/v1/tiles/{version}.dzi",
            "type": "application/xml",
            "title": "Deep Zoom descriptor",
            "roles": ["tiles"],
        },
    }
    if geo:
        assets["xyz"] = {
            "href": f"{base}/v1/tiles/{version}/{{z}}/{{x}}/{{y}}.png",
            "type": "image/png",
            "title": "XYZ WebMercatorQuad tiles",
            "roles": ["tiles"],
        }
    out: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJECTION],
        "id": version,
        "geometry": _polygon(row) if geo else None,
        "properties": properties,
        "assets": assets,
        "links": [
            {
                "rel": "self",
                "href": f"{base}/v1/stac/collections/{collection}/items/{version}",
                "type": GEOJSON,
            },
            {
                "rel": "collection",
                "href": f"{base}/v1/stac/collections/{collection}",
                "type": "application/json",
            },
            {"rel": "parent", "href": f"{base}/v1/stac/collections/{collection}", "type": "application/json"},
            {"rel": "root", "href": f"{base}/v1/stac", "type": "application/json"},
        ],
    }
    if collection:
        out["collection"] = collection
    if geo:
        out["bbox"] = [row["west"], row["south"], row["east"], row["north"]]
    return out


def _polygon(row: dict[str, Any]) -> dict[str, Any]:
    w, s, e, n = row["west"], row["south"], row["east"], row["north"]
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _token(token: str | None) -> int:
    """Paging tokens are offsets into the (stable, creation-ordered) result list."""
    if token is None or token == "":
        return 0
    if not decimal(token) or len(token) > 12:
        raise UsageError("token is not one this server issued", field="token", found=token[:40])
    return int(token)


def search_rows(
    svc: Service,
    audit: Audited,
    *,
    bbox: tuple[float, float, float, float] | None,
    interval: tuple[datetime | None, datetime | None] | None,
    collections: list[str] | None,
    ids: list[str] | None,
) -> list[dict[str, Any]]:
    """Every readable row matching the filters, oldest first (bbox in SQL, the rest here)."""
    rows = svc.lib.catalog.search(bbox=bbox, limit=SCAN_LIMIT)
    if ids:
        wanted = set(ids)
        rows = [r for r in rows if r["id"] in wanted]
    found = readable(audit, rows, svc.lib.catalog.memberships([r["id"] for r in rows]))
    if collections:
        wanted = {c.replace(":", "/", 1) for c in collections}
        found = [r for r in found if wanted & set(r["datasets"])]
    if interval:
        start, end = interval
        found = [r for r in found if (start is None or when(r) >= start) and (end is None or when(r) <= end)]
    return found


def router(prefix: str = "/v1") -> APIRouter:
    """The STAC API routes."""
    r = APIRouter(prefix=f"{prefix}/stac", tags=["stac"], responses=responses(400, 401, 403, 404, 422, 503))

    @r.get("")
    def landing(request: Request, audit: Audited = Depends(audited)) -> dict[str, Any]:
        """The STAC API landing page."""
        base = _base(request)
        stac = f"{base}/v1/stac"
        return {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "imagelib",
            "title": "imagelib",
            "description": "Versions of large scientific rasters",
            "conformsTo": CONFORMS,
            "links": [
                {"rel": "self", "href": stac, "type": "application/json"},
                {"rel": "root", "href": stac, "type": "application/json"},
                {"rel": "conformance", "href": f"{stac}/conformance", "type": "application/json"},
                {"rel": "data", "href": f"{stac}/collections", "type": "application/json"},
                {"rel": "search", "href": f"{stac}/search", "type": GEOJSON, "method": "GET"},
                {"rel": "search", "href": f"{stac}/search", "type": GEOJSON, "method": "POST"},
                {
                    "rel": "service-desc",
                    "href": f"{base}/v1/openapi.json",
                    "type": "application/vnd.oai.openapi+json;version=3.0",
                },
            ],
        }

    @r.get("/conformance")
    def conformance(audit: Audited = Depends(audited)) -> dict[str, Any]:
        """The conformance classes."""
        return {"conformsTo": CONFORMS}

    @r.get("/collections")
    def collections(
        request: Request, svc: Service = Depends(service), audit: Audited = Depends(audited)
    ) -> dict[str, Any]:
        """One collection per readable dataset."""
        allowed = audit.who.readable_namespaces()
        base = _base(request)
        found = [
            _collection(svc, base, d["namespace"], d["dataset"])
            for d in svc.lib.catalog.datasets()
            if allowed is None or d["namespace"] in allowed
        ]
        audit.record("stac.collections", None, None, count=len(found))
        return {
            "collections": found,
            "links": [
                {"rel": "self", "href": f"{base}/v1/stac/collections", "type": "application/json"},
                {"rel": "root", "href": f"{base}/v1/stac", "type": "application/json"},
            ],
        }

    @r.get("/collections/{collection}")
    def collection(
        request: Request, collection: str, svc: Service = Depends(service), audit: Audited = Depends(audited)
    ) -> dict[str, Any]:
        """One collection."""
        namespace, dataset = _split(svc, audit, collection)
        return _collection(svc, _base(request), namespace, dataset)

    @r.get("/collections/{collection}/items")
    def items(
        request: Request,
        collection: str,
        limit: int = Query(10, ge=1, le=MAX_LIMIT),
        token: str | None = Query(None, max_length=12),
        bbox: str | None = Query(None),
        datetime: str | None = Query(None),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> dict[str, Any]:
        """The items of one collection, paged."""
        _split(svc, audit, collection)
        params = {"bbox": bbox, "datetime": datetime, "limit": limit}
        url = f"{_base(request)}/v1/stac/collections/{collection}/items"
        return _page(svc, audit, request, url, params, [collection], None, token, "GET")

    @r.get("/collections/{collection}/items/{version}")
    def one_item(
        request: Request,
        collection: str,
        version: str,
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> dict[str, Any]:
        """One item."""
        _split(svc, audit, collection)
        row = svc.lib.catalog.get_version(version)
        if collection.replace(":", "/", 1) not in row["datasets"]:
            raise NotFound(f"version {version} is not in collection {collection}", field="version")
        audit.record("stac.item", collection.split(":", 1)[0], version)
        return item(row, _base(request), collection)

    @r.get("/search")
    def search_get(
        request: Request,
        bbox: str | None = Query(None, description="west,south,east,north"),
        datetime: str | None = Query(None, description="RFC 3339 instant or interval"),
        collections: str | None = Query(None, description="comma-separated collection ids"),
        ids: str | None = Query(None, description="comma-separated item ids"),
        limit: int = Query(10, ge=1, le=MAX_LIMIT),
        token: str | None = Query(None, max_length=12),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> dict[str, Any]:
        """Item search (GET)."""
        params = {"bbox": bbox, "datetime": datetime, "limit": limit, "collections": collections, "ids": ids}
        return _page(
            svc,
            audit,
            request,
            f"{_base(request)}/v1/stac/search",
            params,
            _list(collections),
            _list(ids),
            token,
            "GET",
        )

    @r.post("/search")
    def search_post(
        request: Request,
        body: SearchBody = Body(...),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> dict[str, Any]:
        """Item search (POST)."""
        params = body.model_dump(exclude={"token"}, exclude_none=True)
        return _page(
            svc,
            audit,
            request,
            f"{_base(request)}/v1/stac/search",
            params,
            body.collections,
            body.ids,
            body.token,
            "POST",
        )

    return r


def _list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _split(svc: Service, audit: Audited, collection: str) -> tuple[str, str]:
    """A collection id → (namespace, dataset), read permission checked, NotFound when it does not exist."""
    namespace, _, dataset = collection.partition(":")
    if namespace:
        audit.allow(namespace, "read", "stac.collection", collection)
    if not any(d["namespace"] == namespace and d["dataset"] == dataset for d in svc.lib.catalog.datasets()):
        raise NotFound(
            f"collection {collection!r} does not exist", code="ROUTE_NOT_FOUND", field="collection"
        )
    return namespace, dataset


def _collection(svc: Service, base: str, namespace: str, dataset: str) -> dict[str, Any]:
    cid = f"{namespace}:{dataset}"
    rows = svc.lib.catalog.versions(namespace, dataset)
    geo = [r for r in rows if r.get("west") is not None]
    bbox = (
        [
            min(r["west"] for r in geo),
            min(r["south"] for r in geo),
            max(r["east"] for r in geo),
            max(r["north"] for r in geo),
        ]
        if geo
        else [-180.0, -90.0, 180.0, 90.0]
    )
    times = [when(r) for r in rows]
    link = f"{base}/v1/stac/collections/{cid}"
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": cid,
        "title": f"{namespace}/{dataset}",
        "description": f"Versions of the imagelib dataset {namespace}/{dataset}",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {
                "interval": [[_iso(min(times)) if times else None, _iso(max(times)) if times else None]]
            },
        },
        "links": [
            {"rel": "self", "href": link, "type": "application/json"},
            {"rel": "items", "href": f"{link}/items", "type": GEOJSON},
            {"rel": "root", "href": f"{base}/v1/stac", "type": "application/json"},
            {"rel": "parent", "href": f"{base}/v1/stac", "type": "application/json"},
        ],
    }


def _page(
    svc: Service,
    audit: Audited,
    request: Request,
    url: str,
    params: dict[str, Any],
    collections: list[str] | None,
    ids: list[str] | None,
    token: str | None,
    method: str,
) -> dict[str, Any]:
    """One page of results with ``next`` (and ``previous``) links in the request's method."""
    bbox = params.get("bbox")
    rows = search_rows(
        svc,
        audit,
        bbox=parse_bbox(bbox),
        interval=parse_datetime(params.get("datetime")),
        collections=collections,
        ids=ids,
    )
    offset, limit = _token(token), int(params.get("limit") or 10)
    page = rows[offset : offset + limit]
    base = _base(request)
    links: list[dict[str, Any]] = [{"rel": "root", "href": f"{base}/v1/stac", "type": "application/json"}]
    if offset + limit < len(rows):
        links.append(_link("next", url, params, str(offset + limit), method))
    if offset > 0:
        links.append(_link("prev", url, params, str(max(offset - limit, 0)), method))
    audit.record("stac.search", None, None, count=len(page))
    return {
        "type": "FeatureCollection",
        "features": [item(r, base) for r in page],
        "links": links,
        "numberMatched": len(rows),
        "numberReturned": len(page),
    }


def _link(rel: str, url: str, params: dict[str, Any], token: str, method: str) -> dict[str, Any]:
    if method == "POST":
        return {
            "rel": rel,
            "href": url,
            "type": GEOJSON,
            "method": "POST",
            "body": {**params, "token": token},
        }
    from urllib.parse import urlencode

    query = {k: v for k, v in params.items() if v is not None}
    return {
        "rel": rel,
        "href": f"{url}?{urlencode({**query, 'token': token})}",
        "type": GEOJSON,
        "method": "GET",
    }
