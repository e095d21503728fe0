"""The Keycloak-compatible dev IdP (issue 9, item 7), served over real HTTP on a loopback port.

Every flow goes through the IdP's HTTP endpoints with httpx (and once through headless chromium); tokens
are checked with the same TokenVerifier the API uses, which fetches discovery and JWKS over HTTP.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import free_port, missing_service, port_open

from imagelib.auth import TokenVerifier
from imagelib.errors import AuthError, UsageError
from imagelib.idp import DEFAULT_REALM, DevIdP, Realm, running, s256

CLI = "imagelib-cli"
API = ("imagelib", "imagelib-dev-secret")
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="module")
def idp() -> Iterator[DevIdP]:
    """The dev IdP with the repository's realm file, on a free loopback port."""
    with running(DEFAULT_REALM) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain HTTP client (redirects are followed explicitly where a test wants them)."""
    with httpx.Client(timeout=10) as client:
        yield client


def endpoint(idp: DevIdP | str, name: str) -> str:
    """An OIDC endpoint of the realm (of a running IdP, or of an issuer URL)."""
    issuer = idp if isinstance(idp, str) else idp.issuer
    return f"{issuer}/protocol/openid-connect/{name}"


def password_token(idp: DevIdP | str, username: str, client: str = CLI, **form: str) -> dict[str, Any]:
    """Tokens for a realm user by the password grant (``<name>-password`` in the realm file)."""
    data = {"grant_type": "password", "client_id": client, "username": username}
    data.update(password=f"{username}-password", **form)
    response = httpx.post(endpoint(idp, "token"), data=data, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWS, unverified (tests look; the verifier decides)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


def auth_params(redirect_uri: str, challenge: str | None, **extra: str) -> dict[str, str]:
    """An authorization request of the public CLI client."""
    params = {
        "client_id": CLI,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "openid",
        "state": "st-123",
        "nonce": "n-456",
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return params


def login_form_action(page: str) -> str:
    """The login form's action URL from the IdP's HTML page."""
    start = page.index('action="') + len('action="')
    return page[start : page.index('"', start)].replace("&amp;", "&")


def browser_login(
    http: httpx.Client, idp: DevIdP, params: dict[str, str], username: str, password: str
) -> httpx.Response:
    """Drive the login page like a browser: GET the form, POST the credentials (no redirect followed)."""
    form = http.get(endpoint(idp, "auth"), params=params)
    assert form.status_code == 200, form.text
    assert 'id="kc-form-login"' in form.text
    return http.post(login_form_action(form.text), data={"username": username, "password": password})


# -- discovery and keys ------------------------------------------------------------------------------------


def test_discovery_has_keycloak_layout(idp: DevIdP, http: httpx.Client) -> None:
    doc = http.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    assert doc["issuer"] == idp.issuer and idp.issuer.endswith("/realms/imagelib")
    base = f"{idp.issuer}/protocol/openid-connect"
    for key, name in [("authorization_endpoint", "auth"), ("token_endpoint", "token"), ("jwks_uri", "certs"),
                      ("userinfo_endpoint", "userinfo"), ("end_session_endpoint", "logout")]:  # fmt: skip
        assert doc[key] == f"{base}/{name}"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["grant_types_supported"]) >= {"authorization_code", "password", "client_credentials"}
    keys = http.get(doc["jwks_uri"]).json()["keys"]
    assert [(k["kty"], k["alg"], k["use"]) for k in keys] == [("RSA", "RS256", "sig")]
    assert "d" not in keys[0]  # never the private part
    other_realm = idp.issuer.rsplit("/", 1)[0] + "/nope"
    assert http.get(f"{other_realm}/.well-known/openid-configuration").status_code == 404


# -- password, client credentials, refresh, userinfo -------------------------------------------------------


def test_password_grant_gives_keycloak_claims(idp: DevIdP) -> None:
    assert "id_token" not in password_token(idp, "alice")  # only with scope openid, as in Keycloak
    body = password_token(idp, "alice", scope="openid")
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert {"access_token", "refresh_token", "id_token"} <= set(body)
    claims = claims_of(body["access_token"])
    assert claims["iss"] == idp.issuer and claims["aud"] == "imagelib" and claims["azp"] == CLI
    assert claims["preferred_username"] == "alice" and claims["email"] == "alice@example.org"
    assert {"imagelib:landsat:read", "imagelib:landsat:write", "imagelib:landsat:tile"} <= set(
        claims["realm_access"]["roles"]
    )
    assert claims["typ"] == "Bearer" and claims["groups"] == []
    assert claims["nbf"] <= claims["iat"] < claims["exp"] and claims["jti"] and claims["sub"]
    id_claims = claims_of(body["id_token"])
    assert id_claims["aud"] == CLI and id_claims["typ"] == "ID"
    principal = TokenVerifier(idp.issuer).verify(body["access_token"])
    assert principal.username == "alice" and principal.can("landsat", "write")


def test_group_roles_reach_the_token(idp: DevIdP) -> None:
    claims = claims_of(password_token(idp, "carol")["access_token"])
    assert claims["groups"] == ["microscopy-readers"]
    assert "imagelib:microscopy:read" in claims["realm_access"]["roles"]  # Keycloak expands group roles


def test_wrong_password_refused(idp: DevIdP, http: httpx.Client) -> None:
    data = {"grant_type": "password", "client_id": CLI, "username": "alice", "password": "bob-password"}
    response = http.post(endpoint(idp, "token"), data=data)
    assert response.status_code == 401 and response.json()["error"] == "invalid_grant"
    data.update(username="nobody")
    assert http.post(endpoint(idp, "token"), data=data).status_code == 401


def test_password_grant_needs_direct_access(idp: DevIdP, http: httpx.Client) -> None:
    data = {"grant_type": "password", "username": "alice", "password": "alice-password"}
    response = http.post(endpoint(idp, "token"), data=data, auth=("jupyterhub", "jupyterhub-dev-secret"))
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"


def test_client_credentials(idp: DevIdP, http: httpx.Client) -> None:
    response = http.post(endpoint(idp, "token"), data={"grant_type": "client_credentials"}, auth=API)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body  # as Keycloak: client credentials get no refresh token
    principal = TokenVerifier(idp.issuer).verify(body["access_token"])
    assert principal.username == "service-account-imagelib"
    assert principal.can("anything", "read") and not principal.can("anything", "write")
    # client_secret_post works too; a wrong secret and a public client are refused
    form = {"grant_type": "client_credentials", "client_id": API[0], "client_secret": API[1]}
    assert http.post(endpoint(idp, "token"), data=form).status_code == 200
    bad = http.post(endpoint(idp, "token"), data={"grant_type": "client_credentials"}, auth=(API[0], "wrong"))
    assert bad.status_code == 401
    public = http.post(endpoint(idp, "token"), data={"grant_type": "client_credentials", "client_id": CLI})
    assert public.status_code == 400 and public.json()["error"] == "unauthorized_client"


def test_refresh_token(idp: DevIdP, http: httpx.Client) -> None:
    first = password_token(idp, "bob")
    time.sleep(1.1)  # iat has second resolution: the refreshed token must differ
    response = http.post(
        endpoint(idp, "token"),
        data={"grant_type": "refresh_token", "client_id": CLI, "refresh_token": first["refresh_token"]},
    )
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["access_token"] != first["access_token"]
    assert claims_of(second["access_token"])["sid"] == claims_of(first["access_token"])["sid"]
    assert TokenVerifier(idp.issuer).verify(second["access_token"]).username == "bob"
    # a refresh token is no bearer credential, and only its own client may use it
    with pytest.raises(AuthError, match=r"audience|access token"):
        TokenVerifier(idp.issuer).verify(first["refresh_token"])
    other = http.post(
        endpoint(idp, "token"),
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=API,
    )
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    garbage = http.post(
        endpoint(idp, "token"),
        data={"grant_type": "refresh_token", "client_id": CLI, "refresh_token": "x.y.z"},
    )
    assert garbage.status_code == 400


def test_logout_ends_the_session(idp: DevIdP, http: httpx.Client) -> None:
    tokens = password_token(idp, "alice")
    info = http.get(endpoint(idp, "userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 200 and info.json()["preferred_username"] == "alice"
    response = http.post(
        endpoint(idp, "logout"), data={"client_id": CLI, "refresh_token": tokens["refresh_token"]}
    )
    assert response.status_code == 204
    refresh = http.post(
        endpoint(idp, "token"),
        data={"grant_type": "refresh_token", "client_id": CLI, "refresh_token": tokens["refresh_token"]},
    )
    assert refresh.status_code == 400 and refresh.json()["error_description"] == "Session not active"
    info = http.get(endpoint(idp, "userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401


def test_browser_logout_with_id_token_hint(idp: DevIdP, http: httpx.Client) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/cb"
    verifier, challenge = pkce_pair()
    response = browser_login(http, idp, auth_params(redirect, challenge), "bob", "bob-password")
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "client_id": CLI, "code": code, "redirect_uri": redirect}
    tokens = http.post(endpoint(idp, "token"), data={**form, "code_verifier": verifier}).json()
    params = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": redirect, "state": "bye"}
    out = http.get(endpoint(idp, "logout"), params=params)
    assert out.status_code == 302 and out.headers["location"] == f"{redirect}?state=bye"
    # the SSO session is gone: the next authorization shows the form again, the refresh token is dead
    assert http.get(endpoint(idp, "auth"), params=auth_params(redirect, challenge)).status_code == 200
    refresh = {"grant_type": "refresh_token", "client_id": CLI, "refresh_token": tokens["refresh_token"]}
    assert http.post(endpoint(idp, "token"), data=refresh).status_code == 400
    evil = {**params, "post_logout_redirect_uri": "https://evil.example/"}
    assert http.get(endpoint(idp, "logout"), params=evil).status_code == 400


def test_lifetimes_come_from_the_realm_file(tmp_path: Path) -> None:
    data = json.loads(DEFAULT_REALM.read_text())
    data.update(accessTokenLifespan=42, ssoSessionIdleTimeout=99)
    with running(Realm.from_dict(data)) as short:
        body = password_token(short, "bob")
    assert body["expires_in"] == 42 and 97 <= body["refresh_expires_in"] <= 99
    claims = claims_of(body["access_token"])
    assert claims["exp"] - claims["iat"] == 42


# -- authorization code + PKCE ------------------------------------------------------------------------------


def test_authorization_code_with_pkce_over_http(idp: DevIdP, http: httpx.Client) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    verifier, challenge = pkce_pair()
    params = auth_params(redirect, challenge)
    wrong = browser_login(http, idp, params, "alice", "wrong")
    assert wrong.status_code == 200 and "Invalid username or password." in wrong.text  # form shown again
    response = http.post(
        login_form_action(wrong.text), data={"username": "alice", "password": "alice-password"}
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"] and query["iss"] == [idp.issuer]
    token = http.post(
        endpoint(idp, "token"),
        data={"grant_type": "authorization_code", "client_id": CLI, "code": query["code"][0],
              "redirect_uri": redirect, "code_verifier": verifier},
    )  # fmt: skip
    assert token.status_code == 200, token.text
    body = token.json()
    assert claims_of(body["id_token"])["nonce"] == "n-456"
    principal = TokenVerifier(idp.issuer).verify(body["access_token"])
    assert principal.username == "alice"
    # the code is single use
    again = http.post(
        endpoint(idp, "token"),
        data={"grant_type": "authorization_code", "client_id": CLI, "code": query["code"][0],
              "redirect_uri": redirect, "code_verifier": verifier},
    )  # fmt: skip
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # the SSO cookie logs the same browser in without the form; prompt=login asks again
    silent = http.get(endpoint(idp, "auth"), params=auth_params(redirect, challenge))
    assert silent.status_code == 302 and "code=" in silent.headers["location"]
    forced = http.get(endpoint(idp, "auth"), params=auth_params(redirect, challenge, prompt="login"))
    assert forced.status_code == 200 and 'id="kc-form-login"' in forced.text


def test_wrong_pkce_verifier_refused(idp: DevIdP) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/cb"
    _, challenge = pkce_pair()
    with httpx.Client(timeout=10) as http:
        response = browser_login(http, idp, auth_params(redirect, challenge), "bob", "bob-password")
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "client_id": CLI, "code": code, "redirect_uri": redirect}
    refused = httpx.post(endpoint(idp, "token"), data={**form, "code_verifier": pkce_pair()[0]})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_grant",
        "error_description": "PKCE verification failed: Code mismatch",
    }


def test_pkce_required_for_public_client_and_redirect_checked(idp: DevIdP, http: httpx.Client) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/cb"
    missing = http.get(endpoint(idp, "auth"), params=auth_params(redirect, None))
    assert missing.status_code == 302
    assert parse_qs(urlsplit(missing.headers["location"]).query)["error"] == ["invalid_request"]
    plain = http.get(
        endpoint(idp, "auth"),
        params=auth_params(redirect, None, code_challenge="a" * 43, code_challenge_method="plain"),
    )
    assert parse_qs(urlsplit(plain.headers["location"]).query)["error"] == ["invalid_request"]
    # an unregistered redirect URI is never redirected to
    evil = http.get(endpoint(idp, "auth"), params=auth_params("https://evil.example/cb", pkce_pair()[1]))
    assert evil.status_code == 400 and "location" not in evil.headers
    unknown = http.get(
        endpoint(idp, "auth"), params={**auth_params(redirect, pkce_pair()[1]), "client_id": "x"}
    )
    assert unknown.status_code == 400


def test_confidential_client_code_flow_needs_its_secret(idp: DevIdP, http: httpx.Client) -> None:
    redirect = "http://127.0.0.1:8000/hub/oauth_callback"
    verifier, challenge = pkce_pair()
    params = {**auth_params(redirect, challenge), "client_id": "jupyterhub"}
    response = browser_login(http, idp, params, "carol", "carol-password")
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "code_verifier": verifier,
    }
    assert http.post(endpoint(idp, "token"), data=form, auth=("jupyterhub", "wrong")).status_code == 401
    ok = http.post(endpoint(idp, "token"), data=form, auth=("jupyterhub", "jupyterhub-dev-secret"))
    # the failed client authentication did not burn the code
    assert ok.status_code == 200, ok.text
    principal = TokenVerifier(idp.issuer).verify(ok.json()["access_token"])
    assert principal.username == "carol" and principal.can("microscopy", "read")


@pytest.mark.browser
def test_authorization_code_with_pkce_in_chromium(idp: DevIdP) -> None:
    if not CHROMIUM.exists():
        missing_service("browser", f"{CHROMIUM} not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("browser", "the playwright package is not installed")
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    verifier, challenge = pkce_pair()
    url = str(httpx.URL(endpoint(idp, "auth"), params=auth_params(redirect, challenge)))
    landed: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()

            # the redirect URI is the client's own loopback listener; the test plays it
            def callback(route: Any) -> None:
                landed.append(route.request.url)
                route.fulfill(body="ok")

            page.route(f"{redirect}*", callback)
            page.goto(url)
            page.fill("#username", "alice")
            page.fill("#password", "not-her-password")
            page.click("#kc-login")
            assert page.locator("#input-error").inner_text() == "Invalid username or password."
            page.fill("#password", "alice-password")
            page.click("#kc-login")
            page.wait_for_url(f"{redirect}*")
        finally:
            browser.close()
    query = parse_qs(urlsplit(landed[-1]).query)
    assert query["state"] == ["st-123"]
    token = httpx.post(
        endpoint(idp, "token"),
        data={"grant_type": "authorization_code", "client_id": CLI, "code": query["code"][0],
              "redirect_uri": redirect, "code_verifier": verifier},
    )  # fmt: skip
    assert token.status_code == 200, token.text
    assert TokenVerifier(idp.issuer).verify(token.json()["access_token"]).username == "alice"


# -- the command and the keys file ---------------------------------------------------------------------------


def test_cli_prints_issuer_and_keeps_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    kids = []
    for _ in range(2):  # a restart with the same keys file keeps the signing key
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagelib", "dev-idp", "--port", str(port), "--keys", str(keys)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            issuer = proc.stdout.readline().strip()  # type: ignore[union-attr]
            assert issuer == f"http://127.0.0.1:{port}/realms/imagelib", proc.stderr.read()  # type: ignore[union-attr]
            assert port_open("127.0.0.1", port)
            jwks = httpx.get(f"{issuer}/protocol/openid-connect/certs", timeout=10).json()
            kids.append(jwks["keys"][0]["kid"])
            assert (
                TokenVerifier(issuer)
                .verify(password_token(issuer, "admin")["access_token"])
                .can("x", "admin")
            )
        finally:
            proc.terminate()
            proc.wait(10)
    assert kids[0] == kids[1]
    assert keys.stat().st_mode & 0o077 == 0  # private keys readable by the owner only


def test_cli_refuses_non_loopback_hosts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imagelib", "dev-idp", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "USAGE" in result.stderr and result.stdout == ""
    with pytest.raises(UsageError, match="known passwords"), running(host="0.0.0.0"):
        pass


def test_hashed_keycloak_credentials(tmp_path: Path) -> None:
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 27500, 64)
    data = json.loads(DEFAULT_REALM.read_text())
    secret = {"value": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode()}
    params = {"hashIterations": 27500, "algorithm": "pbkdf2-sha256"}
    credential = {"type": "password", "secretData": json.dumps(secret), "credentialData": json.dumps(params)}
    data["users"][0]["credentials"] = [credential]
    realm = Realm.from_dict(data)
    assert realm.authenticate("alice", "s3cret") is not None
    assert realm.authenticate("alice@example.org", "s3cret") is not None
    assert realm.authenticate("alice", "alice-password") is None
