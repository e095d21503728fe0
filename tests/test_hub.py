"""JupyterHub as ``make hub`` runs it (hub/jupyterhub_config.py, hub/local.py): real JupyterHub,
configurable-http-proxy, single-user servers, ``imagelib serve`` and the dev IdP on loopback.

Login is the authorization code + PKCE flow through the IdP's login page; the hub admits realm roles
``jupyterhub:user``/``jupyterhub:admin``; the server token reads the user's current token from the hub;
namespace roles decide at the API and at the extension alike; bad logins end on clear pages with a log
line and without tokens in any log."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.hub_support import (
    JWT,
    Platform,
    login,
    login_page,
    open_server,
    platform,
    server_env,
    spawn,
    xsrf,
)

# refresh checks hit the IdP once a token is 5 s old (margin 55 of 60): refresh failures show up fast
MARGIN = 55


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("hub"), lifetime=60, margin=MARGIN) as running_platform:
        yield running_platform


# -- who gets in ------------------------------------------------------------------------------------------


def test_user_without_a_hub_role_is_refused_with_a_clear_page(hub: Platform) -> None:
    client = httpx.Client(timeout=60, follow_redirects=True)
    _, action = login_page(client, hub.hub.url)
    page = client.post(action, data={"username": "dave", "password": "dave-password"})
    assert page.status_code == 403
    assert "none of the roles" in page.text and "jupyterhub:user" in page.text
    assert "Traceback" not in page.text
    assert client.get(f"{hub.hub.url}/hub/api/user").status_code == 403  # not logged in
    assert "User 'dave' not allowed" in hub.logs()


def test_login_spawn_roles_at_api_and_extension(hub: Platform) -> None:
    """alice (landsat) and carol (microscopy) get in; each gets tiles of her namespace and a coded 403
    for the other one, from the API with the token her server fetches and from the extension."""
    url = hub.hub.url
    answers: dict[str, dict[str, int]] = {}
    for user in ("alice", "carol"):
        client = login(url, user)
        seconds = spawn(client, url, user)
        print(f"{user}'s server ready in {seconds:.1f} s")
        open_server(client, url, user)
        env = server_env(user)
        assert env["IMAGELIB_PROFILE"] == "cpu" and "IMAGELIB_HUB_CLIENT_SECRET" not in env
        token = kernel_token(env)
        answers[user] = {}
        for name, version in (("landsat", hub.landsat), ("microscopy", hub.microscopy)):
            api = httpx.get(
                f"{hub.hub.api_url}/v1/tiles/{version}.dzi", headers={"Authorization": f"Bearer {token}"}
            )
            ext = client.get(f"{url}/user/{user}/imagelib/tiles/{version}.dzi")
            if ext.status_code == 403:
                assert ext.json()["error"]["code"] == "FORBIDDEN"
                assert api.json()["error"]["code"] == "FORBIDDEN"
            answers[user][f"api:{name}"] = api.status_code
            answers[user][f"ext:{name}"] = ext.status_code
    assert answers == {
        "alice": {"api:landsat": 200, "ext:landsat": 200, "api:microscopy": 403, "ext:microscopy": 403},
        "carol": {"api:landsat": 403, "ext:landsat": 403, "api:microscopy": 200, "ext:microscopy": 200},
    }


def test_panel_viewer_behind_the_same_login(hub: Platform) -> None:
    """The Panel app runs in the user's server through jupyter-server-proxy, behind the hub's login."""
    url = hub.hub.url
    alice = login(url, "alice")
    if not alice.get(f"{url}/hub/api/users/alice", headers=xsrf(alice)).json()["servers"]:
        spawn(alice, url, "alice")
    open_server(alice, url, "alice")
    viewer = alice.get(f"{url}/user/alice/imagelib-viewer/", timeout=120)
    assert viewer.status_code == 200 and "bokeh" in viewer.text.lower(), viewer.text[:300]
    stranger = httpx.get(f"{url}/user/alice/imagelib-viewer/", follow_redirects=True, timeout=60)
    assert "kc-form-login" in stranger.text or "/hub/login" in str(stranger.url)  # sent to log in first
    assert "bokeh" not in stranger.text.lower()


def kernel_token(env: dict[str, str]) -> str:
    """``current_token()`` run as a kernel would, in a process with the server's environment."""
    code = "from imagelib.auth import current_token; print(current_token())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_server_token_reads_only_its_own_user(hub: Platform) -> None:
    client = login(hub.hub.url, "bob")
    spawn(client, hub.hub.url, "bob")
    env = server_env("bob")
    api, headers = env["JUPYTERHUB_API_URL"], {"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"}
    me = httpx.get(f"{api}/user", headers=headers).json()
    assert set(me["scopes"]) == {
        "access:servers!server=bob/",
        "admin:auth_state!user=bob",
        "users:activity!user=bob",
        # the "identify yourself" scopes every token has on /user
        "read:users:activity!user=bob",
        "read:users:groups!user=bob",
        "read:users:name!user=bob",
    }
    assert httpx.get(f"{api}/users/alice", headers=headers).status_code == 404  # others are invisible
    assert httpx.get(f"{api}/users", headers=headers).status_code == 403
    assert httpx.get(f"{api}/users/bob", headers=headers).json()["auth_state"]["access_token"]


def test_admin_sees_every_server_and_users_cannot_reach_others(hub: Platform) -> None:
    url = hub.hub.url
    alice = login(url, "alice")
    if not alice.get(f"{url}/hub/api/users/alice", headers=xsrf(alice)).json()["servers"]:
        spawn(alice, url, "alice")
    admin = login(url, "admin")
    users = admin.get(f"{url}/hub/api/users", headers=xsrf(admin))
    assert users.status_code == 200
    running_servers = {u["name"] for u in users.json() if u["servers"]}
    assert "alice" in running_servers
    assert admin.get(f"{url}/hub/admin").status_code == 200
    assert {u["name"]: u["admin"] for u in users.json()}["admin"] is True
    carol = login(url, "carol")
    assert carol.get(f"{url}/hub/api/users", headers=xsrf(carol)).status_code == 403
    other = carol.get(f"{url}/user/alice/lab")
    assert other.status_code == 403, (other.url, other.status_code)
    assert carol.get(f"{url}/user/alice/imagelib/tiles/{hub.landsat}.dzi").status_code == 403


# -- bad input at login -----------------------------------------------------------------------------------


def _idp_url(client: httpx.Client, hub: str) -> str:
    """Start a hub login and return the IdP authorization URL it redirects to (not followed)."""
    answer = client.get(f"{hub}/hub/oauth_login", follow_redirects=False)
    assert answer.status_code == 302
    return answer.headers["location"]


def _with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _sign_in(client: httpx.Client, idp_url: str, user: str = "alice") -> httpx.Response:
    """Submit the IdP's form for ``idp_url``; the answer is the redirect back to the hub (not followed)."""
    page = client.get(idp_url)
    action = html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))
    back = client.post(
        action, data={"username": user, "password": f"{user}-password"}, follow_redirects=False
    )
    assert back.status_code == 302, back.text[:300]
    return back


def test_wrong_password_shows_the_form_again_with_a_message(
    hub: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    client = httpx.Client(timeout=60, follow_redirects=True)
    _, action = login_page(client, hub.hub.url)
    with caplog.at_level("WARNING", logger="imagelib.idp"):
        page = client.post(action, data={"username": "alice", "password": "not-her-password"})
    assert page.status_code == 200 and "Invalid username or password." in page.text
    assert "login failed for 'alice'" in caplog.text and "not-her-password" not in caplog.text


def test_tampered_state_is_refused(hub: Platform) -> None:
    client = httpx.Client(timeout=60, follow_redirects=False)
    url = _with_params(
        _idp_url(client, hub.hub.url), state=base64.urlsafe_b64encode(b'{"state_id": "forged"}').decode()
    )
    back = _sign_in(client, url)
    page = client.get(back.headers["location"])
    assert page.status_code == 400 and "OAuth state mismatch" in page.text
    assert "Traceback" not in page.text
    assert "OAuth state mismatch" in hub.logs()


def test_wrong_pkce_verifier_is_refused(hub: Platform, caplog: pytest.LogCaptureFixture) -> None:
    """The code is bound to another challenge than the one the hub holds the verifier of."""
    client = httpx.Client(timeout=60, follow_redirects=False)
    other = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(other.encode()).digest()).rstrip(b"=").decode()
    back = _sign_in(client, _with_params(_idp_url(client, hub.hub.url), code_challenge=challenge))
    with caplog.at_level("WARNING", logger="imagelib.idp"):
        page = client.get(back.headers["location"])
    assert page.status_code == 403 and "PKCE verification failed" in page.text
    assert "Traceback" not in page.text
    assert "refused by the identity provider: invalid_grant: PKCE" in hub.logs()
    assert "PKCE verification failed" in caplog.text


def test_replayed_code_is_refused(hub: Platform) -> None:
    client = httpx.Client(timeout=60, follow_redirects=False)
    back = _sign_in(client, _idp_url(client, hub.hub.url))
    callback = back.headers["location"]
    state_cookie = client.cookies.get("oauthenticator-state")
    first = client.get(callback)
    assert first.status_code == 302  # logged in
    replay = httpx.Client(timeout=60, follow_redirects=False)
    replay.cookies.set("oauthenticator-state", state_cookie, domain="127.0.0.1", path="/hub/")
    page = replay.get(callback)
    assert page.status_code == 403 and "Code not valid" in page.text
    code = parse_qs(urlsplit(callback).query)["code"][0]
    logs = hub.logs()
    assert "refused by the identity provider: invalid_grant: Code not valid" in logs
    assert code not in logs  # the code is masked in the hub's log lines


def test_expired_refresh_token_means_a_new_login(hub: Platform) -> None:
    url = hub.hub.url
    client = login(url, "bob")
    for session in list(hub.idp.sessions.values()):
        if session.user.username == "bob":
            session.last_refresh -= 10 * 24 * 3600  # past the realm's idle timeout: the refresh token is dead
            session.started -= 10 * 24 * 3600
    time.sleep(11)  # past auth_refresh_age, and the access token is older than 60 - MARGIN seconds
    page = client.get(f"{url}/hub/home", follow_redirects=False)
    assert page.status_code == 302 and "/hub/login" in page.headers["location"]
    logs = hub.logs()
    assert "refresh of bob's tokens refused: a new login is required" in logs
    assert "token request (refresh_token) refused by the identity provider" in logs


def test_no_token_in_any_log(hub: Platform) -> None:
    """Runs last: every log of the module's hub, IdP-side warnings included, holds no JWT."""
    logs = hub.logs()
    assert "refreshed the access token" in logs or "User logged in" in logs
    assert not JWT.findall(logs), JWT.findall(logs)[:1]
    assert json.dumps(hub.hub.crypt_key) not in logs and hub.hub.crypt_key not in logs
