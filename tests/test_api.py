"""HTTP API (FastAPI TestClient): error table, catalog routes, tiles with ETag/304/CORS/chains,
streaming multipart uploads → jobs → versions, health and metrics. Real SQLite/PostgreSQL catalogs."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import imagelib
from imagelib.api import ApiSettings, create_app
from imagelib.api.spool import spool_dir
from imagelib.context import Library
from imagelib.errors import TABLE
from imagelib.tiling.http import MAX_INDEX
from tests.conftest import DATA

GEO = DATA / "world.rgb.tif"  # 3×256×512 uint8, EPSG:4326
PLAIN = DATA / "chessboard_GRAY_U16.tif"  # not georeferenced
CHAIN3 = [
    {"op": "band_scale", "in_range": [0, 255], "out_range": [0, 1]},
    {"op": "gaussian", "sigma": 1},
    {"op": "gamma", "gamma": 0.8},
]


@pytest.fixture
def lib(home: Path) -> Iterator[Library]:
    """A library context over the test's IMAGELIB_HOME (SQLite unless the test sets IMAGELIB_CATALOG)."""
    lib = imagelib.connect()
    yield lib
    lib.close()


def make_client(lib: Library, **settings: Any) -> TestClient:
    """A TestClient over a fresh app (lifespan entered by the caller's ``with``)."""
    return TestClient(create_app(lib, settings=ApiSettings(**settings)))


@pytest.fixture
def client(lib: Library) -> Iterator[TestClient]:
    with make_client(lib, cors_origins=("https://viewer.example",)) as c:
        yield c


@pytest.fixture
def geo(lib: Library) -> str:
    return imagelib.ingest(GEO, "earth", "rgb", lib=lib)["version"]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The answer is the coded error body with the table's status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert TABLE[code].http == status
    return body["error"]


def wait_job(client: TestClient, job: str, timeout: float = 60) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{job}`` until it finishes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/v1/jobs/{job}").json()
        if state["state"] in ("succeeded", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish: {state}")


# -- errors ----------------------------------------------------------------------------------------
def test_framework_errors_use_the_table(client: TestClient) -> None:
    assert_error(client.get("/v1/nope"), 404, "ROUTE_NOT_FOUND")
    assert_error(client.delete("/v1/datasets"), 405, "METHOD_NOT_ALLOWED")
    err = assert_error(client.get("/v1/search", params={"limit": 0}), 422, "REQUEST_INVALID")
    assert err["details"]["field"] == "query.limit"
    assert_error(client.get("/v1/versions/not-a-version"), 422, "REQUEST_INVALID")
    assert_error(client.get(f"/v1/versions/{'0' * 32}"), 404, "VERSION_NOT_FOUND")
    assert_error(client.get(f"/v1/jobs/{'0' * 32}"), 404, "JOB_NOT_FOUND")
    assert_error(client.get("/v1/search", params={"bbox": "1,2,3"}), 400, "USAGE")
    assert_error(client.get("/v1/search", params={"datetime": "yesterday"}), 400, "USAGE")


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(made) == 32 and made != "bad id\twith spaces"


def test_openapi_is_published(client: TestClient) -> None:
    paths = client.get("/v1/openapi.json").json()["paths"]
    for path in (
        "/v1/uploads",
        "/v1/jobs/{job}",
        "/v1/datasets",
        "/v1/versions/{version}",
        "/v1/search",
        "/v1/versions/{version}/lineage",
        "/v1/tiles/{version}.dzi",
        "/v1/health/ready",
    ):
        assert path in paths
    assert client.get("/v1/docs").status_code == 200


# -- catalog ---------------------------------------------------------------------------------------
def test_catalog_routes(client: TestClient, lib: Library, geo: str) -> None:
    assert client.get("/v1/datasets").json() == [{"namespace": "earth", "dataset": "rgb", "versions": 1}]
    version = client.get(f"/v1/versions/{geo}").json()
    assert version["version"] == geo and version["datasets"] == ["earth/rgb"]
    assert version["shape"] == [3, 256, 512] and version["crs"] == "EPSG:4326"
    listed = client.get("/v1/datasets/earth/rgb/versions").json()
    assert [v["version"] for v in listed] == [geo]
    derived = imagelib.apply(geo, [{"op": "gaussian", "sigma": 1}], lib=lib)
    lineage = client.get(f"/v1/versions/{geo}/lineage").json()
    assert lineage["descendants"][0]["version"] == derived
    assert lineage["descendants"][0]["operation"]["op"] == "filter"
    hits = client.get("/v1/search", params={"bbox": "-10,-10,10,10"}).json()
    assert {h["version"] for h in hits} == {geo, derived}
    assert client.get("/v1/search", params={"bbox": "-10,-10,10,10", "namespace": "other"}).json() == []
    assert_error(client.get("/v1/datasets/earth/a%20b/versions"), 400, "DATASET_NAME_INVALID")


# -- tiles -----------------------------------------------------------------------------------------
def test_dzi_descriptor_and_tiles(client: TestClient, lib: Library, geo: str) -> None:
    from imagelib.tiling import render_tile

    dzi = client.get(f"/v1/tiles/{geo}.dzi")
    assert dzi.status_code == 200 and dzi.headers["content-type"].startswith("application/xml")
    assert 'Width="512"' in dzi.text and 'Height="256"' in dzi.text and 'Format="jpg"' in dzi.text
    tile = client.get(f"/v1/tiles/{geo}_files/9/1_0.png")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    assert tile.content == render_tile(geo, 9, 1, 0, fmt="png", scheme="dzi", lib=lib, cache=None)
    assert tile.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert_error(client.get(f"/v1/tiles/{geo}_files/9/7_7.png"), 404, "TILE_NOT_FOUND")
    assert_error(client.get(f"/v1/tiles/{geo}_files/9/1_0.gif"), 422, "REQUEST_INVALID")


def test_etag_304_cache_control_and_cors(client: TestClient, geo: str) -> None:
    url = f"/v1/tiles/{geo}/1/1/0.png"
    first = client.get(url, headers={"Origin": "https://viewer.example"})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    tag = first.headers["etag"]
    assert tag.startswith('"') and not tag.startswith("W/")
    assert first.headers["access-control-allow-origin"] == "https://viewer.example"
    assert "ETag" in first.headers["access-control-expose-headers"]
    again = client.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert again.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(url, headers={"If-None-Match": f'"x", W/{tag}'}).status_code == 304
    other = client.get(url, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.options(
        url, headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 200


def test_chain_on_the_fly(client: TestClient, lib: Library, geo: str) -> None:
    from imagelib.tiling import render_tile

    url = f"/v1/tiles/{geo}/1/1/0.png"
    plain = client.get(url)
    chained = client.get(url, params={"chain": json.dumps(CHAIN3)})
    assert chained.status_code == 200
    assert chained.content != plain.content and chained.headers["etag"] != plain.headers["etag"]
    expected = render_tile(geo, 1, 1, 0, fmt="png", scheme="xyz", chain=CHAIN3, lib=lib, cache=None)
    assert chained.content == expected
    # the same chain written differently (key order, 1 vs 1.0) is the same tile and the same ETag
    reordered = [dict(reversed(list(op.items()))) for op in CHAIN3]
    assert client.get(url, params={"chain": json.dumps(reordered)}).headers["etag"] == chained.headers["etag"]
    dzi = client.get(f"/v1/tiles/{geo}_files/9/0_0.jpg", params={"chain": json.dumps(CHAIN3)})
    assert dzi.status_code == 200 and dzi.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("chain", "status", "code"),
    [
        ("not json", 400, "CHAIN_INVALID"),
        ('{"op": "gaussian"}', 400, "CHAIN_INVALID"),
        ('[{"op": "nope"}]', 400, "OP_UNKNOWN"),
        ('[{"op": "gaussian", "sigma": -1}]', 400, "PARAM_INVALID"),
        ("/etc/passwd", 400, "CHAIN_INVALID"),  # never read as a file path
        ("[" * 3000, 400, "CHAIN_INVALID"),  # nested deeper than the JSON parser's stack
        (json.dumps([{"op": "gaussian", "sigma": 1}] * 400), 413, "PAYLOAD_TOO_LARGE"),
    ],
)
def test_bad_chains(client: TestClient, geo: str, chain: str, status: int, code: str) -> None:
    assert_error(client.get(f"/v1/tiles/{geo}/1/1/0.png", params={"chain": chain}), status, code)


@pytest.mark.parametrize("token", ["³", "١٢", "-1", "1e3"])
def test_stac_paging_tokens_not_issued_are_400(client: TestClient, geo: str, token: str) -> None:
    """Only the decimal offsets the server wrote into next links page (Unicode digits included, which
    ``str.isdigit`` accepts and ``int`` refuses or reads), over GET and POST."""
    assert_error(client.get("/v1/stac/search", params={"token": token}), 400, "USAGE")
    assert_error(client.post("/v1/stac/search", json={"token": token}), 400, "USAGE")
    assert_error(client.post("/v1/stac/search", json={"token": "9" * 13}), 400, "USAGE")


def test_volume_slices(client: TestClient, lib: Library, geo: str, tmp_path: Path) -> None:
    """``?axis=&index=`` pick a slice of a z,y,x volume (the extension's grammar): the bytes equal
    render_tile's for that slice, each slice has its own ETag; a slice of a 2D image is a coded 400."""
    import numpy as np
    import tifffile

    from imagelib.tiling import render_tile

    stack = np.random.default_rng(5).integers(0, 255, (4, 64, 80), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, metadata={"axes": "ZYX"})
    volume = imagelib.ingest(tmp_path / "stack.tif", "earth", "stack", lib=lib)["version"]
    tiles = {}
    for index in (1, 2):
        answer = client.get(f"/v1/tiles/{volume}_files/7/0_0.png", params={"axis": "z", "index": index})
        assert answer.status_code == 200, answer.text
        expected = render_tile(volume, 7, 0, 0, "png", axis="z", index=index, lib=lib, cache=None)
        assert answer.content == expected
        tiles[index] = answer
    assert tiles[1].content != tiles[2].content and tiles[1].headers["etag"] != tiles[2].headers["etag"]
    assert_error(client.get(f"/v1/tiles/{volume}_files/7/0_0.png", params={"index": 9}), 400, "USAGE")
    assert_error(client.get(f"/v1/tiles/{geo}_files/0/0_0.png", params={"axis": "y"}), 400, "USAGE")
    # malformed slices are the same coded 400 as in the Jupyter extension (not FastAPI's own 422)
    for bad in ({"axis": "w"}, {"index": "-1"}, {"index": "x1"}, {"index": str(MAX_INDEX + 1)}):
        answer = client.get(f"/v1/tiles/{volume}.dzi", params=bad)
        details = assert_error(answer, 400, "USAGE")["details"]
        assert details["field"] == next(iter(bad)) and "etag" not in answer.headers, details
    params = {p["name"]: p["schema"] for p in client.get("/v1/openapi.json").json()["paths"][
        "/v1/tiles/{version}.dzi"]["get"]["parameters"]}  # fmt: skip
    assert params["axis"]["enum"] == ["z", "y", "x"] and params["index"]["pattern"] == "^[0-9]+$"


def test_bad_tile_paths(client: TestClient, lib: Library, geo: str) -> None:
    plain = imagelib.ingest(PLAIN, "lab", "chess", lib=lib)["version"]
    assert_error(client.get(f"/v1/tiles/{plain}/0/0/0.png"), 400, "NOT_GEOREFERENCED")
    assert_error(client.get(f"/v1/tiles/{'f' * 32}.dzi"), 404, "VERSION_NOT_FOUND")
    for path in ("..%2F..%2Fetc%2Fpasswd.dzi", "%2e%2e.dzi", "ABCDEF.dzi", f"{geo[:-1]}%00.dzi"):
        answer = client.get(f"/v1/tiles/{path}")
        code = answer.json()["error"]["code"]  # a coded refusal before any storage key is built
        assert (
            code in ("USAGE", "ROUTE_NOT_FOUND", "REQUEST_INVALID") and answer.status_code == TABLE[code].http
        )
    assert_error(client.get(f"/v1/tiles/{geo}/99/0/0.png"), 404, "TILE_NOT_FOUND")
    assert_error(client.get(f"/v1/tiles/{geo}/1/-1/0.png"), 404, "TILE_NOT_FOUND")


# -- uploads ---------------------------------------------------------------------------------------
def upload(client: TestClient, path: Path, headers: dict[str, str] | None = None, **fields: str) -> Any:
    """POST /v1/uploads with ``file`` and the given form fields."""
    with path.open("rb") as f:
        files = {"file": (path.name, f, "image/tiff")}
        return client.post("/v1/uploads", data=fields, files=files, headers=headers)


def test_upload_to_version(client: TestClient, lib: Library, catalog_env: str) -> None:
    answer = upload(
        client, GEO, namespace="earth", dataset="up", sha256=hashlib.sha256(GEO.read_bytes()).hexdigest()
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()["job"]
    assert answer.headers["location"] == f"/v1/jobs/{job}"
    done = wait_job(client, job)
    assert done["state"] == "succeeded", done
    version = client.get(f"/v1/versions/{done['version']}").json()
    assert version["checksum"] == hashlib.sha256(GEO.read_bytes()).hexdigest()
    assert version["datasets"] == ["earth/up"]
    assert client.get(f"/v1/tiles/{done['version']}/1/0/0.png").status_code == 200
    svc = client.app.state.service
    spool = spool_dir(svc.lib.settings.home, svc.settings)
    assert not [p for p in spool.rglob("*") if p.is_file()]  # the spooled upload is gone once stored


def test_malformed_uploads_fail_with_coded_reports(client: TestClient, lib: Library, tmp_path: Path) -> None:
    from tests.test_hostile import CASES

    jobs = {}
    for name, (make, code) in sorted(CASES.items()):
        folder = tmp_path / name
        folder.mkdir()
        path = make(folder)
        if path.is_dir():
            continue  # uploads carry one file; Zarr directories are ingested from paths
        answer = upload(client, path, namespace="bad", dataset="files")
        assert answer.status_code == 202, answer.text
        jobs[name] = (answer.json()["job"], code)
    assert len(jobs) >= 12
    for name, (job, code) in jobs.items():
        done = wait_job(client, job)
        assert done["state"] == "failed" and done["version"] is None, name
        assert done["report"]["valid"] is False and done["error"]["code"] == code, (name, done["error"])
        assert done["report"]["errors"][0]["code"] == code
    assert lib.catalog.counts()["versions"] == 0
    assert not (lib.settings.home / "store" / "versions").exists() or not any(
        (lib.settings.home / "store" / "versions").iterdir()
    )


def test_upload_bad_input(client: TestClient, lib: Library) -> None:
    digest = "0" * 64
    err = assert_error(
        upload(client, GEO, namespace="earth", dataset="x", sha256=digest), 422, "CHECKSUM_MISMATCH"
    )
    assert err["details"]["expected"] == digest
    assert_error(upload(client, GEO, namespace="earth"), 422, "REQUEST_INVALID")
    assert_error(upload(client, GEO, namespace="../etc", dataset="x"), 400, "DATASET_NAME_INVALID")
    assert_error(upload(client, GEO, namespace="earth", dataset="a b"), 400, "DATASET_NAME_INVALID")
    assert_error(upload(client, GEO, namespace="earth", dataset="x", sha256="xyz"), 422, "REQUEST_INVALID")
    assert_error(client.post("/v1/uploads", data={"namespace": "a", "dataset": "b"}), 422, "REQUEST_INVALID")
    assert_error(client.post("/v1/uploads", json={"namespace": "a"}), 422, "REQUEST_INVALID")
    # a body cut off before its closing boundary
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="namespace"\r\n\r\nearth\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.tif"\r\n\r\n'
    ).encode()
    body += GEO.read_bytes()[:5000]
    cut = client.post(
        "/v1/uploads", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_error(cut, 422, "REQUEST_INVALID")
    assert lib.catalog.counts()["versions"] == 0 and lib.catalog.counts()["jobs"] == 0
    spool = lib.settings.home / "uploads"
    assert not any(spool.iterdir())  # refused uploads leave nothing behind


def test_upload_size_limit(lib: Library) -> None:
    with make_client(lib, max_upload_bytes=100_000) as client:
        assert_error(upload(client, GEO, namespace="earth", dataset="big"), 413, "PAYLOAD_TOO_LARGE")

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
            boundary = b'--B\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
            yield boundary
            for _ in range(20):
                yield b"x" * 10_000
            yield b"\r\n--B--\r\n"

        streamed = client.post(
            "/v1/uploads", content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=B"}
        )
        assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")
    assert not any((lib.settings.home / "uploads").iterdir())


# -- health and metrics ----------------------------------------------------------------------------
def test_health_ready_and_metrics(client: TestClient, geo: str) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/v1/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] and body["db"]["ok"] and body["queue"]["ok"] and body["store"]["ok"]
    assert set(body["gpu"]) >= {"available", "name", "memory"}
    client.get(f"/v1/tiles/{geo}/1/1/0.png")
    client.get(f"/v1/tiles/{geo}/1/1/0.png")
    text = client.get("/metrics").text
    assert 'imagelib_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/tiles/' in text
    assert "imagelib_tile_cache_hit_ratio 0.5" in text
    assert "imagelib_queue_depth" in text and "imagelib_jobs" in text


# -- tus (protocol details; tuspy end to end is in test_api_server) -------------------------------------
def tus_meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def test_non_ascii_digits_are_coded_errors(lib: Library, geo: str) -> None:
    """ "³" (a latin-1 header byte) and "١" pass ``str.isdigit`` but not ``int``: numeric headers and
    query values made of them are coded 4xx answers, never a 500."""
    tus = {"Tus-Resumable": "1.0.0"}
    meta = tus_meta(namespace="earth", dataset="t", filename="x.tif")
    with make_client(lib) as client:
        assert_error(
            client.post("/v1/tus/", headers={**tus, "Upload-Length": b"\xb3", "Upload-Metadata": meta}),
            422,
            "REQUEST_INVALID",
        )
        url = client.post("/v1/tus/", headers={**tus, "Upload-Length": "4", "Upload-Metadata": meta}).headers[
            "location"
        ]
        patch = {**tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": b"\xb9"}
        assert_error(client.patch(url, content=b"0123", headers=patch), 409, "UPLOAD_OFFSET_MISMATCH")
        for bands in ("\u00b3", "1,\u0662,3"):
            assert_error(client.get(f"/v1/tiles/{geo}/1/1/0.png", params={"bands": bands}), 400, "USAGE")


def test_tus_protocol_and_bad_input(lib: Library) -> None:
    tus = {"Tus-Resumable": "1.0.0"}
    with make_client(lib, max_upload_bytes=10_000) as client:
        options = client.options("/v1/tus/")
        assert options.status_code == 204 and options.headers["tus-version"] == "1.0.0"
        assert options.headers["tus-extension"] == "creation,termination,checksum"
        assert "sha256" in options.headers["tus-checksum-algorithm"]
        meta = tus_meta(namespace="earth", dataset="t", filename="../../x.tif")
        old = client.post(
            "/v1/tus/", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "10", "Upload-Metadata": meta}
        )
        assert_error(old, 412, "TUS_VERSION_UNSUPPORTED")
        assert old.headers["tus-version"] == "1.0.0"
        big = client.post("/v1/tus/", headers={**tus, "Upload-Length": "10001", "Upload-Metadata": meta})
        assert_error(big, 413, "PAYLOAD_TOO_LARGE")
        bad = tus_meta(namespace="../etc", dataset="t")
        assert_error(
            client.post("/v1/tus/", headers={**tus, "Upload-Length": "10", "Upload-Metadata": bad}),
            400,
            "DATASET_NAME_INVALID",
        )
        missing = tus_meta(namespace="earth")
        assert_error(
            client.post("/v1/tus/", headers={**tus, "Upload-Length": "10", "Upload-Metadata": missing}),
            422,
            "REQUEST_INVALID",
        )
        assert_error(
            client.post("/v1/tus/", headers={**tus, "Upload-Metadata": meta}), 422, "REQUEST_INVALID"
        )
        created = client.post("/v1/tus/", headers={**tus, "Upload-Length": "10", "Upload-Metadata": meta})
        assert created.status_code == 201 and created.headers["tus-resumable"] == "1.0.0"
        url = created.headers["location"]
        folder = lib.settings.home / "uploads" / url.rsplit("/", 1)[1]
        assert {p.name for p in folder.iterdir()} == {
            "info.json",
            "x.tif",
        }  # the name cannot escape its folder
        patch = {**tus, "Content-Type": "application/offset+octet-stream"}
        assert client.patch(url, content=b"01234", headers={**patch, "Upload-Offset": "0"}).status_code == 204
        assert client.head(url, headers=tus).headers["upload-offset"] == "5"
        assert_error(
            client.patch(url, content=b"56789", headers={**patch, "Upload-Offset": "0"}),
            409,
            "UPLOAD_OFFSET_MISMATCH",
        )
        wrong = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
        mismatch = client.patch(
            url, content=b"56789", headers={**patch, "Upload-Offset": "5", "Upload-Checksum": wrong}
        )
        assert_error(mismatch, 460, "UPLOAD_CHECKSUM_MISMATCH")
        assert client.head(url, headers=tus).headers["upload-offset"] == "5"  # the bad chunk was dropped
        too_long = client.patch(url, content=b"56789xxxxx", headers={**patch, "Upload-Offset": "5"})
        assert_error(too_long, 413, "PAYLOAD_TOO_LARGE")
        assert_error(
            client.patch(url, content=b"5", headers={**tus, "Upload-Offset": "5"}), 422, "REQUEST_INVALID"
        )
        assert (
            client.head(f"/v1/tus/{'0' * 32}", headers=tus).status_code == 404
        )  # HEAD answers carry no body
        assert_error(
            client.patch("/v1/tus/not-an-upload", content=b"", headers={**patch, "Upload-Offset": "0"}),
            404,
            "UPLOAD_NOT_FOUND",
        )
        assert client.delete(url, headers=tus).status_code == 204
        assert client.head(url, headers=tus).status_code == 404
        assert not folder.exists()


def test_tus_finished_upload_becomes_an_ingest_job(client: TestClient, lib: Library) -> None:
    content = GEO.read_bytes()
    tus = {"Tus-Resumable": "1.0.0"}
    meta = tus_meta(namespace="earth", dataset="tus", sha256=hashlib.sha256(content).hexdigest())
    url = client.post(
        "/v1/tus/", headers={**tus, "Upload-Length": str(len(content)), "Upload-Metadata": meta}
    ).headers["location"]
    patch = {**tus, "Content-Type": "application/offset+octet-stream"}
    half = len(content) // 2
    digest = "sha256 " + base64.b64encode(hashlib.sha256(content[:half]).digest()).decode()
    assert (
        client.patch(
            url, content=content[:half], headers={**patch, "Upload-Offset": "0", "Upload-Checksum": digest}
        ).status_code
        == 204
    )
    done = client.patch(url, content=content[half:], headers={**patch, "Upload-Offset": str(half)})
    assert done.status_code == 204 and done.headers["upload-offset"] == str(len(content))
    job = done.headers["imagelib-job"]
    assert client.head(url, headers=tus).headers["imagelib-job"] == job  # reported again, queued once
    state = wait_job(client, job)
    assert state["state"] == "succeeded"
    assert (
        client.get(f"/v1/versions/{state['version']}").json()["checksum"]
        == hashlib.sha256(content).hexdigest()
    )
    assert lib.catalog.counts()["versions"] == 1


# -- derive ----------------------------------------------------------------------------------------
def test_derive_endpoint(client: TestClient, lib: Library, geo: str) -> None:
    answer = client.post(f"/v1/versions/{geo}/derive", json={"chain": CHAIN3})
    assert answer.status_code == 202, answer.text
    done = wait_job(client, answer.json()["job"])
    assert done["state"] == "succeeded", done
    derived = done["version"]
    assert derived != geo and client.get(f"/v1/versions/{derived}").json()["kind"] == "derived"
    assert client.get(f"/v1/versions/{geo}/lineage").json()["descendants"][0]["version"] == derived
    again = wait_job(client, client.post(f"/v1/versions/{geo}/derive", json={"chain": CHAIN3}).json()["job"])
    assert again["version"] == derived  # content-addressed: the same chain is the same version
    assert_error(
        client.post(f"/v1/versions/{geo}/derive", json={"chain": [{"op": "nope"}]}), 400, "OP_UNKNOWN"
    )
    assert_error(client.post(f"/v1/versions/{geo}/derive", json={"chain": "x"}), 422, "REQUEST_INVALID")
    assert_error(
        client.post(f"/v1/versions/{'0' * 32}/derive", json={"chain": CHAIN3}), 404, "VERSION_NOT_FOUND"
    )
    assert lib.catalog.counts()["versions"] == 2


def test_gc_expires_abandoned_uploads(
    client: TestClient, lib: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from imagelib.cli import app as cli

    tus = {"Tus-Resumable": "1.0.0"}
    meta = tus_meta(namespace="earth", dataset="t")
    urls = [
        client.post("/v1/tus/", headers={**tus, "Upload-Length": "10", "Upload-Metadata": meta}).headers[
            "location"
        ]
        for _ in range(2)
    ]
    old = lib.settings.home / "uploads" / urls[0].rsplit("/", 1)[1]
    for path in (old, *old.iterdir()):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    monkeypatch.setenv("IMAGELIB_UPLOAD_EXPIRY_S", "3600")
    result = CliRunner().invoke(cli, ["gc", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["removed_uploads"] == 1
    assert client.head(urls[0], headers=tus).status_code == 404
    assert client.head(urls[1], headers=tus).headers["upload-offset"] == "0"


def test_access_log_is_one_json_line_without_secrets(client: TestClient) -> None:
    import io
    import logging

    from imagelib.observability import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("imagelib.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        headers = {"X-Request-ID": "log-1", "Authorization": "Bearer secret-token-value"}
        client.get("/v1/datasets", headers=headers)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["request_id"] == "log-1" and line["route"] == "/v1/datasets" and line["status"] == 200
    assert line["user"] == "local" and line["method"] == "GET" and line["latency_ms"] > 0
    assert "secret-token-value" not in stream.getvalue()
