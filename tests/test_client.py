"""``imagelib.client.Client`` against a real ``imagelib serve`` (subprocess, SQLite catalog, in-process queue)
secured by the dev IdP on loopback: upload → job → version → lineage/search/STAC → derive → tiles, coded
403/404/401 errors, a token provider asked before every request, and the one retry after a 401."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagelib.client import Client
from imagelib.errors import AuthError, InputError, NotFound, Unavailable, ValidationFailed
from imagelib.idp import running
from imagelib.queue.messages import dead_letter_name
from tests.conftest import DATA, free_port
from tests.queue_support import broker_channel, require_rabbitmq
from tests.test_api_auth import password_token
from tests.test_api_e2e import api_process

GEO = DATA / "world.rgb.tif"
MANIFEST = {row["file"]: row for row in json.loads((DATA / "MANIFEST.json").read_text())}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(API base URL, issuer): ``imagelib serve`` verifying tokens of the dev IdP."""
    home = tmp_path_factory.mktemp("client")
    with running() as idp:
        env = {
            **os.environ,
            "IMAGELIB_HOME": str(home / "home"),
            "IMAGELIB_OIDC_ISSUER": idp.issuer,
            "IMAGELIB_QUEUE": "local",
        }
        for name in ("IMAGELIB_STORE", "IMAGELIB_CATALOG", "IMAGELIB_TOKEN", "IMAGELIB_API_URL"):
            env.pop(name, None)
        with api_process(env, home / "api.log") as base:
            yield base, idp.issuer


class Recorder:
    """A token provider handing out a new token on every call, and the tokens the API was sent."""

    def __init__(self, issuer: str, user: str) -> None:
        self.issuer, self.user = issuer, user
        self.given: list[str] = []
        self.sent: list[str] = []

    def __call__(self) -> str:
        self.given.append(password_token(self.issuer, self.user))
        return self.given[-1]

    def watch(self, client: Client) -> Client:
        """Record the bearer token of every request ``client`` sends."""
        client._http.event_hooks["request"].append(
            lambda request: self.sent.append(request.headers.get("authorization", "").removeprefix("Bearer "))
        )
        return client


def test_upload_job_version_tiles_with_a_token_asked_per_request(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, issuer = stack
    tokens = Recorder(issuer, "alice")
    with tokens.watch(Client(base, tokens)) as client:
        assert client.health()["status"] == "ok"
        job = client.upload(GEO, "landsat", "world", progress=True)
        bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
        done, total = re.search(r"100%\|.*\| *([\d.]+\w*)/([\d.]+\w*)", bar).groups()
        assert done == total  # every byte of the file went through the progress bar
        finished = client.wait(job, timeout=120)
        assert finished["state"] == "succeeded", finished
        version = finished["version"]

        expected = MANIFEST[GEO.name]
        row = client.version(version)
        assert row["checksum"].removeprefix("sha256:") == hashlib.sha256(GEO.read_bytes()).hexdigest()
        assert row["checksum"].removeprefix("sha256:") == expected["sha256"]
        assert row["shape"] == expected["shape"] and row["dtype"] == expected["dtype"]
        assert "landsat/world" in row["datasets"]
        assert [v["version"] for v in client.versions("landsat", "world")] == [version]
        assert {"namespace": "landsat", "dataset": "world", "versions": 1} in client.datasets()
        found = client.search(bbox=(-10, -10, 10, 10), namespace="landsat")
        assert [v["version"] for v in found] == [version]
        assert client.search(bbox=(-10, -10, 10, 10), namespace="microscopy") == []
        assert [i["id"] for i in client.stac_search(bbox=[-10, -10, 10, 10], page_size=1)] == [version]

        dzi = client.dzi(version)
        width, height = (int(re.search(rf'{k}="(\d+)"', dzi).group(1)) for k in ("Width", "Height"))
        assert (height, width) == tuple(expected["shape"][1:])
        top = (max(width, height) - 1).bit_length()  # the full-resolution DZI level
        tile = Image.open(io.BytesIO(client.tile(version, top, 0, 0)))
        assert tile.format == "JPEG" and tile.size == (255, 255)  # 254 px + 1 px overlap on one side
        xyz = Image.open(io.BytesIO(client.xyz_tile(version, 1, 1, 0)))
        assert xyz.format == "PNG" and xyz.size == (256, 256)
        chain = [{"op": "gaussian", "sigma": 2}]
        assert client.tile(version, top, 0, 0, chain=chain) != client.tile(version, top, 0, 0)

        derived = client.wait(client.derive(version, chain), timeout=120)["version"]
        assert derived != version
        edges = client.lineage(derived)["ancestors"]
        assert [(e["parent"], e["child"]) for e in edges] == [(version, derived)]
        assert client.lineage(version)["descendants"][0]["child"] == derived

    # asked before every request, each answer sent once, in order
    assert len(tokens.given) == len(tokens.sent) > 15
    assert tokens.sent == tokens.given and len(set(tokens.given)) == len(tokens.given)


def test_forbidden_and_missing_come_back_as_coded_errors(stack: tuple[str, str], tmp_path: Path) -> None:
    base, issuer = stack
    with Client(base, password_token(issuer, "alice")) as alice:
        version = alice.wait(alice.upload(DATA / "byte.tif", "landsat", "small", progress=False))["version"]
        second = alice.wait(alice.upload(DATA / "shade.tif", "landsat", "small", progress=False))["version"]
        paged = alice.stac_search(collections=["landsat:small"], page_size=1)  # two pages, followed
        assert sorted(i["id"] for i in paged) == sorted([version, second]) and version != second
        assert len(alice.stac_search(collections=["landsat:small"], page_size=1, max_items=1)) == 1
        with pytest.raises(InputError) as mismatch:  # refused by the API itself, before any job
            alice.upload(DATA / "byte.tif", "landsat", "small", sha256="0" * 64, progress=False)
        assert mismatch.value.code == "CHECKSUM_MISMATCH" and mismatch.value.field == "sha256"
        assert mismatch.value.found == hashlib.sha256((DATA / "byte.tif").read_bytes()).hexdigest()
        empty = tmp_path / "empty.tif"
        empty.write_bytes(b"")
        with pytest.raises(InputError) as failed:
            alice.wait(alice.upload(empty, "landsat", "empty", progress=False))
        assert failed.value.code == "FILE_EMPTY"
        with pytest.raises(NotFound) as missing:
            alice.version("0" * len(version))
        assert missing.value.code == "VERSION_NOT_FOUND" and missing.value.details["http_status"] == 404
        with pytest.raises(NotFound) as no_job:
            alice.job("f" * 32)
        assert no_job.value.code == "JOB_NOT_FOUND"
        with pytest.raises(ValueError) as malformed:  # UsageError is a ValueError too
            alice.job("does-not-exist")
        assert malformed.value.code == "REQUEST_INVALID" and malformed.value.field == "path.job"
    with Client(base, password_token(issuer, "carol")) as carol:  # reads microscopy only
        with pytest.raises(AuthError) as refused:
            carol.version(version)
        assert refused.value.code == "FORBIDDEN" and isinstance(refused.value, PermissionError)
        with pytest.raises(AuthError) as no_write:
            carol.upload(DATA / "byte.tif", "landsat", "small", progress=False)
        assert no_write.value.code == "FORBIDDEN" and no_write.value.details["http_status"] == 403
    with Client(base) as anonymous, pytest.raises(AuthError) as anonymous_refused:
        anonymous.version(version)
    assert anonymous_refused.value.code == "UNAUTHENTICATED"


def test_a_refused_token_is_fetched_afresh_and_the_request_retried_once(stack: tuple[str, str]) -> None:
    base, issuer = stack
    answers = iter(["not.a.jwt", password_token(issuer, "bob")])
    asked: list[str] = []

    def provider() -> str:
        asked.append(next(answers))
        return asked[-1]

    with Client(base, provider) as client:
        assert isinstance(client.datasets(), list)
    assert len(asked) == 2  # the 401 answer to the first token made the client ask again

    dead = iter(["not.a.jwt", "still.not.a.jwt", "never.asked"])
    with Client(base, lambda: next(dead)) as client, pytest.raises(AuthError) as twice:
        client.datasets()
    assert twice.value.code == "UNAUTHENTICATED" and next(dead) == "never.asked"  # one retry only


def test_default_token_comes_from_the_environment_outside_a_hub(
    stack: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, issuer = stack
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.setenv("IMAGELIB_API_URL", base)
    monkeypatch.setenv("IMAGELIB_TOKEN", password_token(issuer, "bob"))
    with Client() as client:
        assert client.base_url == base and isinstance(client.datasets(), list)


class _BadGateway(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>Bad Gateway</body></html>")

    def log_message(self, *args: Any) -> None:
        pass


def test_unreachable_api_and_a_proxy_error_page_are_coded() -> None:
    nowhere = Client(f"http://127.0.0.1:{free_port()}", "t", timeout=5)
    with nowhere, pytest.raises(Unavailable) as down:
        nowhere.health()
    assert down.value.code == "API_UNAVAILABLE"
    proxy = HTTPServer(("127.0.0.1", 0), _BadGateway)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{proxy.server_port}", "t")
        with client, pytest.raises(Unavailable) as bad:
            client.version("abc")
        assert bad.value.code == "API_UNAVAILABLE" and "Bad Gateway" in str(bad.value)
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_failed_ingest_raises_its_validation_report(stack: tuple[str, str], tmp_path: Path) -> None:
    base, issuer = stack
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\x07" * 4000)  # a TIFF header over garbage
    with Client(base, password_token(issuer, "alice")) as client:
        job = client.upload(junk, "landsat", "junk", progress=False)
        with pytest.raises(InputError) as failed:
            client.wait(job)
        state = client.wait(job, check=False)
    assert state["state"] == "failed"
    assert state["report"]  # a content failure carries the validation report
    assert failed.value.code == state["report"]["errors"][0]["code"]
    assert isinstance(failed.value, ValidationFailed) and failed.value.report == state["report"]


def test_a_large_upload_refused_for_its_token_is_sent_again(stack: tuple[str, str], tmp_path: Path) -> None:
    base, issuer = stack
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))  # far beyond what socket buffers absorb before the 401
    good = password_token(issuer, "alice")
    asked: list[str] = []

    def provider() -> str:
        asked.append("not.a.jwt" if not asked else good)
        return asked[-1]

    with Client(base, provider) as client:
        # the API checks the declared sha256 against the bytes it got: the retry sent the whole file again
        digest = hashlib.sha256(big.read_bytes()).hexdigest()
        job = client.upload(big, "landsat", "big", sha256=digest, progress=False)
        assert client.wait(job, check=False)["state"] in ("succeeded", "failed")
    assert asked[:2] == ["not.a.jwt", good]  # refused, asked again, the whole file sent again


@pytest.mark.rabbitmq
def test_waiting_for_a_job_nobody_runs_times_out_with_a_code(tmp_path: Path) -> None:
    require_rabbitmq()
    queue = f"imagelib.test.client.{uuid.uuid4().hex[:8]}"  # no worker consumes it: the job stays queued
    env = {
        **os.environ,
        "IMAGELIB_HOME": str(tmp_path / "home"),
        "IMAGELIB_QUEUE": "amqp://guest:guest@127.0.0.1:5672/%2F",
        "IMAGELIB_QUEUE_NAME": queue,
    }
    for name in ("IMAGELIB_STORE", "IMAGELIB_CATALOG", "IMAGELIB_OIDC_ISSUER"):
        env.pop(name, None)
    try:
        with api_process(env, tmp_path / "api.log") as base, Client(base, lambda: None) as client:
            job = client.upload(DATA / "byte.tif", "landsat", "queued", progress=False)
            with pytest.raises(Unavailable) as late:
                client.wait(job, timeout=1.5, poll=0.2)
            assert late.value.code == "JOB_WAIT_TIMEOUT" and late.value.found == "queued"
    finally:
        with broker_channel() as channel:
            channel.queue_delete(queue)
            channel.queue_delete(dead_letter_name(queue))
