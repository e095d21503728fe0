"""The local hub over minutes and under load: a kernel's API calls keep working past the
access-token lifetime of 60 s without a new login and stop with 401 after logout; ten users log in and
spawn at once."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.hub_support import Platform, login, platform, server_env, spawn

USERS = tuple(f"user{i:02d}" for i in range(1, 11))

#: what a kernel does: take the current token, call the API, wait past the lifetime, call again
KERNEL = """
import json, os, sys, time
import httpx
from imagelib.auth import current_token
from imagelib.errors import ImagelibError

def call():
    try:
        token = current_token()
    except ImagelibError as exc:
        return {"code": exc.code, "status": exc.spec.http}
    answer = httpx.get(os.environ["IMAGELIB_API_URL"] + "/v1/versions/" + sys.argv[1],
                       headers={"Authorization": "Bearer " + token})
    claims = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[1] + "=="))
    return {"status": answer.status_code, "exp": claims["exp"], "iat": claims["iat"], "now": time.time()}

out = [call()]
time.sleep(float(sys.argv[2]))
out.append(call())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("hub-slow"), lifetime=60, margin=30, extra_users=USERS) as running:
        yield running


def kernel_calls(env: dict[str, str], version: str, wait: float) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", KERNEL, version, str(wait)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_kernel_token_stays_fresh_and_dies_with_logout(hub: Platform) -> None:
    client = login(hub.hub.url, "alice")
    spawn(client, hub.hub.url, "alice")
    env = server_env("alice")
    first, second = kernel_calls(env, hub.landsat, 75)  # one process: its cache must not serve a dead token
    assert first["status"] == 200 and second["status"] == 200, (first, second)
    assert first["exp"] < second["now"] < second["exp"]  # the first token was dead by then: a refreshed one
    logout = client.get(f"{hub.hub.url}/hub/logout", follow_redirects=True)
    assert logout.status_code == 200 and "/hub/login" in str(logout.url)  # back through the IdP's logout
    after, _ = kernel_calls(env, hub.landsat, 0)
    assert after == {"code": "UNAUTHENTICATED", "status": 401}
    assert not any(s.user.username == "alice" for s in hub.idp.sessions.values())  # the IdP session ended
    anonymous = httpx.get(f"{hub.hub.api_url}/v1/versions/{hub.landsat}")
    assert anonymous.status_code == 401


def test_ten_users_log_in_and_spawn_at_once(hub: Platform) -> None:
    def one(user: str) -> float:
        return spawn(login(hub.hub.url, user), hub.hub.url, user, timeout=400)

    with ThreadPoolExecutor(len(USERS)) as pool:
        seconds = sorted(pool.map(one, USERS))
    p50 = statistics.median(seconds)
    p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
    print(f"\n{len(USERS)} concurrent spawns: p50 {p50:.1f} s, p95 {p95:.1f} s, max {seconds[-1]:.1f} s")
    users = httpx.get(f"{hub.hub.url}/hub/api/users", headers=admin_headers(hub)).json()
    running = {u["name"] for u in users if u["servers"]}
    assert set(USERS) <= running


def admin_headers(hub: Platform) -> dict[str, str]:
    """A hub API token of the admin user, made through the admin's login session."""
    admin = login(hub.hub.url, "admin")
    xsrf = admin.cookies.get("_xsrf", path="/hub/") or ""
    made = admin.post(
        f"{hub.hub.url}/hub/api/users/admin/tokens", json={"note": "test"}, headers={"X-XSRFToken": xsrf}
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"token {made.json()['token']}"}
