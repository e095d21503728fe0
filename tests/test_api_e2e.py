"""End to end over HTTP against the real services: ``imagelib serve`` (PostgreSQL catalog, RabbitMQ queue,
dev IdP issuer) and an ``imagelib worker``: upload → job → version → STAC search → DZI and XYZ tiles, with
a token from the password grant and again from authorization code + PKCE through the login page. (The
broker restarted under the running API: ``tests/test_api_broker_restart.py``.)"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagelib.idp import running
from imagelib.queue.messages import dead_letter_name
from tests.conftest import DATA, free_port, port_open
from tests.queue_support import AMQP_URL, WorkerProcess, broker_channel, require_rabbitmq, wait_for
from tests.test_api_auth import password_token

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]
GEO = DATA / "world.rgb.tif"


@contextmanager
def api_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """``imagelib serve`` as a subprocess; yields its base URL."""
    port = free_port()
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagelib", "serve", "--port", str(port)],
            env=env,
            stderr=err,
            stdout=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: port_open("127.0.0.1", port, 0.2) or proc.poll() is not None, 60, "imagelib serve")
        assert proc.poll() is None, log.read_text()[-2000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


def pkce_token(issuer: str, user: str, password: str) -> str:
    """An access token by authorization code + PKCE, driven through the dev IdP's login page."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://127.0.0.1/callback"
    oidc = f"{issuer}/protocol/openid-connect"
    with httpx.Client() as browser:
        page = browser.get(
            f"{oidc}/auth",
            params={
                "client_id": "imagelib-cli",
                "redirect_uri": redirect,
                "response_type": "code",
                "scope": "openid",
                "state": "s1",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert page.status_code == 200 and 'id="kc-form-login"' in page.text
        action = html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))
        back = browser.post(action, data={"username": user, "password": password})
        assert back.status_code in (302, 303), back.text
        query = httpx.URL(back.headers["location"]).params
        assert query["state"] == "s1"
        tokens = browser.post(
            f"{oidc}/token",
            data={
                "grant_type": "authorization_code",
                "client_id": "imagelib-cli",
                "code": query["code"],
                "redirect_uri": redirect,
                "code_verifier": verifier,
            },
        )
        tokens.raise_for_status()
        return tokens.json()["access_token"]


def wait_job(base: str, job: str, headers: dict[str, str], timeout: float = 90) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (s := httpx.get(f"{base}/v1/jobs/{job}", headers=headers).json())["state"]
            in ("succeeded", "failed")
            and s
        ),
        timeout,
        f"job {job}",
    )


def test_upload_search_tiles_with_real_services(pg_url: str, home: Path, tmp_path: Path) -> None:
    from pystac_client import Client

    require_rabbitmq()
    queue = f"imagelib.test.api.{uuid.uuid4().hex[:8]}"
    with running() as idp:
        env = {
            **os.environ,
            "IMAGELIB_OIDC_ISSUER": idp.issuer,
            "IMAGELIB_QUEUE": AMQP_URL,
            "IMAGELIB_QUEUE_NAME": queue,
        }
        worker = WorkerProcess(queue, tmp_path / "worker.log")
        try:
            with api_process(env, tmp_path / "api.log") as base:
                for how, token in (
                    ("password", password_token(idp.issuer, "alice")),
                    ("pkce", pkce_token(idp.issuer, "alice", "alice-password")),
                ):
                    auth = {"Authorization": f"Bearer {token}"}
                    rid = f"e2e-{how}"
                    with GEO.open("rb") as f:
                        answer = httpx.post(
                            f"{base}/v1/uploads",
                            headers={**auth, "X-Request-ID": rid},
                            data={"namespace": "landsat", "dataset": f"world-{how}"},
                            files={"file": (GEO.name, f, "image/tiff")},
                            timeout=60,
                        )
                    assert answer.status_code == 202, answer.text
                    assert answer.headers["x-request-id"] == rid
                    done = wait_job(base, answer.json()["job"], auth)
                    assert done["state"] == "succeeded", done
                    version = done["version"]
                    assert worker.events("job.succeeded", job=answer.json()["job"], request_id=rid)
                    stac = Client.open(f"{base}/v1/stac", headers=auth)
                    found = [
                        i.id
                        for i in stac.search(
                            bbox=[-10, -10, 10, 10], collections=[f"landsat:world-{how}"]
                        ).items()
                    ]
                    assert found == [version]
                    dzi = httpx.get(f"{base}/v1/tiles/{version}.dzi", headers=auth)
                    assert dzi.status_code == 200 and 'Width="512"' in dzi.text
                    tile = httpx.get(f"{base}/v1/tiles/{version}_files/9/0_0.jpg", headers=auth)
                    assert tile.status_code == 200 and tile.content[:2] == b"\xff\xd8"
                    xyz = httpx.get(f"{base}/v1/tiles/{version}/1/1/0.png", headers=auth)
                    assert xyz.status_code == 200 and xyz.content[:4] == b"\x89PNG"
                    assert httpx.get(f"{base}/v1/tiles/{version}/1/1/0.png").status_code == 401
        finally:
            worker.stop()
            with broker_channel() as channel:
                channel.queue_delete(queue)
                channel.queue_delete(dead_letter_name(queue))
