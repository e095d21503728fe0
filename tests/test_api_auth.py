"""RBAC on every endpoint with tokens from the dev identity provider (password grant): 401 vs 403, search
filtered to readable namespaces, audit for admins only, probes public."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import imagelib
from imagelib.api import ApiSettings, create_app
from imagelib.context import Library
from imagelib.idp import running
from tests.test_api import GEO, PLAIN, assert_error, tus_meta, upload

PASSWORDS = {
    "alice": "alice-password",
    "bob": "bob-password",
    "carol": "carol-password",
    "admin": "admin-password",
}


def password_token(issuer: str, user: str) -> str:
    """An access token from the dev IdP's token endpoint (password grant, public CLI client)."""
    answer = httpx.post(
        f"{issuer}/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": "imagelib-cli",
            "username": user,
            "password": PASSWORDS[user],
        },
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


@pytest.fixture(scope="module")
def idp() -> Iterator[Any]:
    with running() as provider:
        yield provider


@pytest.fixture
def secured(
    home: Path, idp: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Library, dict]]:
    monkeypatch.setenv("IMAGELIB_OIDC_ISSUER", idp.issuer)
    lib = imagelib.connect()
    landsat = imagelib.ingest(GEO, "landsat", "rgb", lib=lib)["version"]
    micro = imagelib.ingest(PLAIN, "microscopy", "chess", lib=lib)["version"]
    tokens = {user: {"Authorization": f"Bearer {password_token(idp.issuer, user)}"} for user in PASSWORDS}
    with TestClient(create_app(lib, settings=ApiSettings())) as client:
        yield client, lib, {"landsat": landsat, "micro": micro, **tokens}
    lib.close()


def test_401_without_or_with_a_bad_token(secured: tuple) -> None:
    client, _, ctx = secured
    for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic YWxpY2U6eA=="}):
        answer = client.get("/v1/datasets", headers=headers)
        assert_error(answer, 401, "UNAUTHENTICATED")
        assert answer.headers["www-authenticate"].startswith("Bearer")
    tampered = ctx["alice"]["Authorization"][:-4] + "AAAA"
    assert_error(client.get("/v1/datasets", headers={"Authorization": tampered}), 401, "UNAUTHENTICATED")
    assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200


def test_rbac_per_namespace_and_operation(secured: tuple) -> None:
    client, _, ctx = secured
    landsat, micro, alice, bob, carol = ctx["landsat"], ctx["micro"], ctx["alice"], ctx["bob"], ctx["carol"]
    # alice: landsat read/write/tile
    assert client.get(f"/v1/versions/{landsat}", headers=alice).status_code == 200
    assert client.get(f"/v1/tiles/{landsat}/1/1/0.png", headers=alice).status_code == 200
    assert_error(client.get(f"/v1/versions/{micro}", headers=alice), 403, "FORBIDDEN")
    assert_error(client.get(f"/v1/tiles/{micro}.dzi", headers=alice), 403, "FORBIDDEN")
    assert_error(client.get(f"/v1/versions/{micro}/lineage", headers=alice), 403, "FORBIDDEN")
    # bob: read everywhere, no tile, no write
    assert client.get(f"/v1/versions/{micro}", headers=bob).status_code == 200
    assert_error(client.get(f"/v1/tiles/{landsat}/1/1/0.png", headers=bob), 403, "FORBIDDEN")
    assert_error(upload(client, GEO, namespace="landsat", dataset="x", headers=bob), 403, "FORBIDDEN")
    body = {"chain": [{"op": "gaussian", "sigma": 1}]}
    assert_error(client.post(f"/v1/versions/{landsat}/derive", json=body, headers=bob), 403, "FORBIDDEN")
    # search and datasets filtered to readable namespaces
    assert {d["namespace"] for d in client.get("/v1/datasets", headers=carol).json()} == {"microscopy"}
    assert [v["version"] for v in client.get("/v1/search", headers=carol).json()] == [micro]
    assert {v["version"] for v in client.get("/v1/search", headers=bob).json()} == {landsat, micro}
    # alice may upload into landsat, not into microscopy; her job is hers to read, not carol's
    assert_error(upload(client, GEO, namespace="microscopy", dataset="x", headers=alice), 403, "FORBIDDEN")
    accepted = upload(client, GEO, namespace="landsat", dataset="again", headers=alice)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()["job"]
    assert client.get(f"/v1/jobs/{job}", headers=alice).status_code == 200
    assert_error(client.get(f"/v1/jobs/{job}", headers=carol), 403, "FORBIDDEN")


def test_a_resumable_upload_is_only_for_writers_of_its_namespace(secured: tuple) -> None:
    """HEAD, PATCH and DELETE of an existing tus upload check the caller's write role in the upload's
    namespace, as its creation did: a reader (bob) or a writer elsewhere (carol) gets a coded 403."""
    client, _, ctx = secured
    tus = {"Tus-Resumable": "1.0.0"}
    meta = tus_meta(namespace="landsat", dataset="resumed")
    created = client.post(
        "/v1/tus/", headers={**ctx["alice"], **tus, "Upload-Length": "4", "Upload-Metadata": meta}
    )
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    patch = {**tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    for user in ("bob", "carol"):
        assert client.head(url, headers={**ctx[user], **tus}).status_code == 403  # a HEAD answer has no body
        assert_error(client.patch(url, content=b"ab", headers={**ctx[user], **patch}), 403, "FORBIDDEN")
        assert_error(client.delete(url, headers={**ctx[user], **tus}), 403, "FORBIDDEN")
    mine = client.head(url, headers={**ctx["alice"], **tus})
    assert mine.status_code == 200 and mine.headers["upload-offset"] == "0"  # nothing was written or removed
    assert client.delete(url, headers={**ctx["alice"], **tus}).status_code == 204


def test_audit_is_for_admins_and_names_the_actor(secured: tuple) -> None:
    client, _, ctx = secured
    client.get(f"/v1/versions/{ctx['landsat']}", headers=ctx["alice"])
    client.get(f"/v1/versions/{ctx['micro']}", headers=ctx["alice"])  # refused: audited as forbidden
    assert_error(client.get("/v1/audit", headers=ctx["alice"]), 403, "FORBIDDEN")
    assert_error(client.get("/v1/audit/verify", headers=ctx["alice"]), 403, "FORBIDDEN")
    client.app.state.service.audit.flush()
    events = client.get("/v1/audit", headers=ctx["admin"]).json()
    mine = [(e["action"], e["namespace"], e["outcome"]) for e in events if e["actor"] == "alice"]
    assert ("version.read", "landsat", "ok") in mine and ("version.read", "microscopy", "forbidden") in mine
    assert all(e["request_id"] and len(e["hash"]) == 64 for e in events)
    assert client.get("/v1/audit/verify", headers=ctx["admin"]).json()["ok"] is True


def test_every_refused_token_is_401_over_http(secured: tuple, idp: Any) -> None:
    from tests.test_auth import (
        CASES as TOKENS,
    )  # expired, nbf, aud, iss, alg none, HS256 confusion, tampered, kid…

    client, _, _ = secured
    for case, (build, _) in TOKENS.items():
        token = build(idp)
        answer = client.get("/v1/search", headers={"Authorization": f"Bearer {token}"} if token else {})
        assert answer.status_code == 401, (case, answer.text)
        assert answer.json()["error"]["code"] == "UNAUTHENTICATED", case
