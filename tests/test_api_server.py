"""The API on a real uvicorn server: real STAC and tus clients (pystac-client, tuspy) against it."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

import imagelib
from imagelib.api import ApiSettings, create_app
from imagelib.context import Library
from tests.conftest import DATA, free_port

GEO_FILES = ["world.rgb.tif", "RGB.byte.tif", "byte.tif", "cogeo.tif", "shade.tif"]


@contextmanager
def serving(lib: Library, **settings: object) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port (a background thread); yields the base URL."""
    port = free_port()
    app = create_app(lib, settings=ApiSettings(**settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def lib(home: Path) -> Iterator[Library]:
    lib = imagelib.connect()
    yield lib
    lib.close()


def test_pystac_client_searches_and_pages(lib: Library) -> None:
    from pystac_client import Client

    geo = {imagelib.ingest(DATA / name, "earth", "scenes", lib=lib)["version"] for name in GEO_FILES}
    plain = imagelib.ingest(DATA / "chessboard_GRAY_U16.tif", "lab", "chess", lib=lib)["version"]
    with serving(lib) as base:
        client = Client.open(f"{base}/v1/stac")
        assert {c.id for c in client.get_collections()} == {"earth:scenes", "lab:chess"}
        for method in ("POST", "GET"):
            search = client.search(bbox=[-180, -90, 180, 90], limit=2, method=method)
            pages = list(search.pages())
            assert len(pages) == 3 and all(len(p.items) <= 2 for p in pages)
            found = [item.id for page in pages for item in page.items]
            assert sorted(found) == sorted(geo)  # every item once across the pages
        item = next(client.search(ids=[next(iter(geo))]).items())
        assert item.geometry["type"] == "Polygon" and item.datetime is not None
        assert {"zarr", "dzi", "xyz"} <= set(item.assets) and item.properties["proj:shape"]
        assert item.assets["dzi"].href.endswith(".dzi")
        # not georeferenced: geometry null, found by collection, never by bbox
        chess = list(client.search(collections=["lab:chess"]).items())
        assert [i.id for i in chess] == [plain] and chess[0].geometry is None and "xyz" not in chess[0].assets
        assert list(client.search(datetime="2000-01-01/2001-01-01").items()) == []
        assert len(list(client.search(datetime="2000-01-01/..", max_items=100).items())) == len(geo) + 1
        collection = client.get_collection("earth:scenes")
        assert len(list(collection.get_items())) == len(geo)


def _cut_patch(base: str, url: str, offset: int, data: bytes, checksum: bool) -> None:
    """A PATCH whose connection dies half-way through its body (what a dropped network does)."""
    digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
    extra = f"Upload-Checksum: sha1 {digest}\r\n" if checksum else ""
    path = url.split("://", 1)[1].split("/", 1)[1]
    port = int(base.rsplit(":", 1)[1])
    head = (
        f"PATCH /{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n{extra}\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + data[: len(data) // 2])
        time.sleep(0.3)  # let the server write what arrived before the connection goes
    time.sleep(0.3)


@pytest.mark.parametrize("checksum", [False, True])
def test_tuspy_resumes_after_a_cut_connection(lib: Library, checksum: bool) -> None:
    from tusclient.client import TusClient

    source = DATA / "RGB.byte.tif"
    content = source.read_bytes()
    meta = {"namespace": "earth", "dataset": "tus", "filename": source.name}
    with serving(lib) as base:
        client = TusClient(f"{base}/v1/tus/")
        first = client.uploader(str(source), chunk_size=256 * 1024, metadata=meta, upload_checksum=checksum)
        first.upload(stop_at=512 * 1024)
        assert first.offset == 512 * 1024
        _cut_patch(base, first.url, first.offset, content[first.offset : first.offset + 256 * 1024], checksum)
        head = httpx.head(first.url, headers={"Tus-Resumable": "1.0.0"})
        # without a checksum the bytes that arrived are kept; with one the unverifiable half chunk is dropped
        kept = int(head.headers["upload-offset"])
        assert (kept > first.offset) if not checksum else (kept == first.offset)
        resumed = client.uploader(str(source), chunk_size=256 * 1024, url=first.url, upload_checksum=checksum)
        assert resumed.offset == kept  # tuspy asked the server where to go on
        resumed.upload()
        head = httpx.head(first.url, headers={"Tus-Resumable": "1.0.0"})
        assert head.headers["upload-offset"] == str(len(content))
        job = head.headers["imagelib-job"]
        deadline = time.monotonic() + 60
        while (state := httpx.get(f"{base}/v1/jobs/{job}").json())["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state["state"] == "succeeded", state
        version = httpx.get(f"{base}/v1/versions/{state['version']}").json()
        assert version["checksum"] == hashlib.sha256(content).hexdigest()
