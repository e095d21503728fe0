"""Packed tile archives (issue 12, item 4): one stored zip per pyramid whose entries are byte-identical to
the directory export, with a complete index and exact offsets (read back with :mod:`zipfile` and by
hand), Zip64 records where fields overflow, the JavaScript reader (node) and the viewers in headless
chromium over an HTTP server with Range support, one without, and from ``file://``."""

from __future__ import annotations

import functools
import http.server
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_tiling import ingest_array, lib, smooth_rgb  # noqa: F401 - module-scoped IMAGELIB_HOME fixture
from test_tiling_browser import assert_not_blank, browser, open_viewer  # noqa: F401 - browser fixture

from imagelib.storage import Store
from imagelib.tiling import archive as archive_module
from imagelib.tiling.archive import TileArchive, tile_writer
from imagelib.tiling.embed import ARCHIVE_JS
from imagelib.tiling.export import tile_version
from imagelib.tiling.sink import Sink

VIEWER_FILES = {"index.html", "tilearchive.js"}
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "dzi": "application/octet-stream"}


@pytest.fixture(scope="module")
def exports(lib: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:  # noqa: F811
    """Per scheme, the same version exported as a folder of tiles and as a packed archive (+ viewers)."""
    version = ingest_array(lib, "archive", smooth_rgb(700, 900, seed=3))
    out: dict[str, dict[str, Any]] = {}
    for scheme in ("dzi", "xyz"):
        folder, packed = tmp_path_factory.mktemp(f"{scheme}_dir"), tmp_path_factory.mktemp(f"{scheme}_zip")
        tile_version(version, scheme, folder, embed=True)
        result = tile_version(version, scheme, packed, embed=True, archive=True)
        zip_path = packed / result["archive"]
        out[scheme] = {"folder": folder, "packed": packed, "zip": zip_path, "result": result}
    return out


def tile_files(folder: Path) -> dict[str, bytes]:
    """Relative path → bytes of every pyramid file of a directory export (the viewer files left out)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "index.html" and "vendor" not in p.parts
    }


@pytest.mark.parametrize("scheme", ["dzi", "xyz"])
def test_archive_entries_equal_directory_export(exports: dict[str, dict[str, Any]], scheme: str) -> None:
    export = exports[scheme]
    expected = tile_files(export["folder"])
    assert len(expected) == export["result"]["tiles"] + (scheme == "dzi")  # + the .dzi descriptor
    with zipfile.ZipFile(export["zip"]) as archive:
        assert archive.testzip() is None  # every CRC right
        assert sorted(archive.namelist()) == sorted(expected)
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert archive.read(info) == expected[info.filename], info.filename
    # the archive replaces the tiles: nothing but it and the viewer lies beside it
    names = {p.relative_to(export["packed"]).as_posix() for p in export["packed"].rglob("*") if p.is_file()}
    assert {n for n in names if not n.startswith("vendor/")} == VIEWER_FILES | {export["zip"].name}


def read_index(data: bytes) -> list[tuple[str, int, int]]:
    """(name, local header offset, size) of each central directory record, parsed by hand."""
    eocd = data.rindex(b"PK\x05\x06")
    count, size, start = struct.unpack_from("<HII", data, eocd + 10)
    assert eocd == start + size  # the directory ends where the end record begins (no comment, no gap)
    entries, p = [], start
    for _ in range(count):
        assert data[p : p + 4] == b"PK\x01\x02"
        (stored_size,) = struct.unpack_from("<I", data, p + 20)
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, p + 28)
        (offset,) = struct.unpack_from("<I", data, p + 42)
        entries.append((data[p + 46 : p + 46 + name_len].decode(), offset, stored_size))
        p += 46 + name_len + extra_len + comment_len
    assert p == eocd
    return entries


@pytest.mark.parametrize("scheme", ["dzi", "xyz"])
def test_index_offsets_point_at_each_tile(exports: dict[str, dict[str, Any]], scheme: str) -> None:
    export = exports[scheme]
    data = export["zip"].read_bytes()
    expected = tile_files(export["folder"])
    entries = read_index(data)
    assert sorted(n for n, _, _ in entries) == sorted(expected)
    end = 0
    for name, offset, size in entries:
        assert offset == end, name  # entries back to back, in the order of the index
        assert data[offset : offset + 4] == b"PK\x03\x04"
        name_len, extra_len = struct.unpack_from("<HH", data, offset + 26)
        assert data[offset + 30 : offset + 30 + name_len].decode() == name
        body = offset + 30 + name_len + extra_len
        assert data[body : body + size] == expected[name], name
        end = body + size
    assert data.index(b"PK\x01\x02", end) == end  # the central directory follows the last tile
    if scheme == "dzi":  # full resolution first, row by row, the descriptor last (as the folder export)
        top = export["result"]["levels"] - 1
        assert entries[0][0].endswith(f"_files/{top}/0_0.jpg") and entries[-1][0].endswith(".dzi")


def test_archive_is_reproducible(exports: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    export = exports["dzi"]
    again = tile_version(export["result"]["version"], "dzi", tmp_path, archive=True, workers=1)
    assert (tmp_path / again["archive"]).read_bytes() == export["zip"].read_bytes()


def write_small_archive(folder: Path, entries: dict[str, bytes]) -> Path:
    """An archive of ``entries`` written through :class:`TileArchive`."""
    packed = TileArchive(Store(folder.as_uri()), "small.zip")
    for name, body in entries.items():
        packed.write(name, body)
    packed.close()
    return folder / "small.zip"


ENTRIES = {f"{z}/{x}/0.png": bytes([z, x]) * (50 + 7 * x) for z in range(3) for x in range(1 << z)}


def test_zip64_records_where_fields_overflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the real limits (4 GiB, 65535 entries) are lowered so the Zip64 paths run on a few bytes
    monkeypatch.setattr(archive_module, "ZIP64_LIMIT", 300)
    monkeypatch.setattr(archive_module, "ZIP64_COUNT", 5)
    path = write_small_archive(tmp_path, ENTRIES)
    data = path.read_bytes()
    assert data[-22:-18] == b"PK\x05\x06" and data[-42:-38] == b"PK\x06\x07"  # EOCD + Zip64 locator
    assert struct.unpack_from("<HH", data, len(data) - 22 + 8) == (0xFFFF, 0xFFFF)
    with zipfile.ZipFile(path) as archive:
        offsets = [info.header_offset for info in archive.infolist()]
        assert {i.filename: archive.read(i) for i in archive.infolist()} == ENTRIES
    assert max(offsets) > 300  # some offsets went through the Zip64 extra field
    assert data.count(struct.pack("<HHQ", 1, 8, max(offsets))) == 1


def test_failed_export_leaves_no_partial_archive(tmp_path: Path) -> None:
    sink = Sink(tmp_path)
    with pytest.raises(RuntimeError), tile_writer(sink, "half.zip") as writer:
        writer.write("0/0/0.png", b"tile")
        raise RuntimeError("render failed")
    assert not (tmp_path / "half.zip").exists()
    with tile_writer(sink, None) as writer:
        assert writer is sink


# -- the JavaScript reader ---------------------------------------------------------------------------


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=…`` support (206 / 416), as static hosts have."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not header or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
        if not match or match.groups() == ("", ""):
            self.send_error(416)
            return None
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:  # a suffix: the last N bytes (all of them when N exceeds the size)
            start, end = max(size - int(last), 0), size - 1
        if start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        with path.open("rb") as fh:
            fh.seek(start)
            body = fh.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


class PlainHandler(http.server.SimpleHTTPRequestHandler):
    """``python -m http.server``: ignores Range, always answers 200 with the whole file."""

    def log_message(self, *args: Any) -> None:
        pass


def serve(root: Path, handler: type[http.server.SimpleHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``root`` on loopback; yields the base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def root(exports: dict[str, dict[str, Any]]) -> Path:
    """The exports' common parent folder."""
    return exports["dzi"]["folder"].parent


@pytest.fixture(scope="module")
def range_server(root: Path) -> Iterator[str]:
    """An HTTP server with Range support over the exports."""
    yield from serve(root, RangeHandler)


@pytest.fixture(scope="module")
def plain_server(root: Path) -> Iterator[str]:
    """An HTTP server without Range support over the exports."""
    yield from serve(root, PlainHandler)


NODE_READER = """
globalThis.window = globalThis;
require(process.argv[1]);
const [source, names] = [process.argv[2], JSON.parse(process.argv[3])];
(async () => {
  const fs = require("fs");
  const input = source.startsWith("http") ? source : new Blob([fs.readFileSync(source)]);
  const archive = await new TileArchive(input).open();
  const out = {count: archive.entries.size, tiles: {}, missing: await archive.blob("no/such.png")};
  for (const name of names) {
    const blob = await archive.blob(name);
    out.tiles[name] = [blob.type, Buffer.from(await blob.arrayBuffer()).toString("base64")];
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def node_read(source: str, names: list[str]) -> dict[str, Any]:
    """Read ``names`` from an archive (a path, read as a Blob, or an HTTP URL) with tilearchive.js in node."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make setup installs it for the viewer JavaScript)")
    proc = subprocess.run(
        [node, "-e", NODE_READER, str(ARCHIVE_JS), source, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_read_back(found: dict[str, Any], expected: dict[str, bytes]) -> None:
    """The JavaScript reader found every entry and returned the exact bytes."""
    import base64

    assert found["count"] == len(expected) and found["missing"] is None
    for name, (media_type, text) in found["tiles"].items():
        assert base64.b64decode(text) == expected[name], name
        assert media_type == MEDIA_TYPES[name.rsplit(".", 1)[1]], name


@pytest.mark.parametrize("zip64", [False, True])
def test_javascript_reader_returns_every_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zip64: bool
) -> None:
    if zip64:
        monkeypatch.setattr(archive_module, "ZIP64_LIMIT", 300)
        monkeypatch.setattr(archive_module, "ZIP64_COUNT", 5)
    path = write_small_archive(tmp_path, ENTRIES)
    assert_read_back(node_read(str(path), list(ENTRIES)), ENTRIES)


@pytest.mark.parametrize("server", ["range_server", "plain_server"])
def test_javascript_reader_over_http(
    exports: dict[str, dict[str, Any]], root: Path, request: pytest.FixtureRequest, server: str
) -> None:
    base = request.getfixturevalue(server)
    export = exports["dzi"]
    expected = tile_files(export["folder"])
    url = f"{base}/{export['zip'].relative_to(root).as_posix()}"
    names = sorted(expected)[::3]
    found = node_read(url, names)
    assert sorted(found["tiles"]) == names
    assert_read_back(found, expected)


# -- the viewers in headless chromium ----------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["dzi", "xyz"])
def test_archive_viewer_over_http_with_range(
    browser: object,  # noqa: F811
    range_server: str,
    root: Path,
    exports: dict[str, dict[str, Any]],
    scheme: str,
) -> None:
    export = exports[scheme]
    page = f"{range_server}/{export['packed'].relative_to(root).as_posix()}/index.html"
    responses, failed, shot = open_viewer(browser, page)
    reads = [s for u, s in responses if u.endswith(export["zip"].name)]
    assert len(reads) >= 3 and set(reads) == {206}, responses  # the index, then tiles: Range reads only
    assert all(s < 400 for _, s in responses), [r for r in responses if r[1] >= 400]
    assert not failed, failed
    assert_not_blank(shot)
    # the same tiles drawn by the same viewer: the picture equals the directory export's
    folder = export["folder"].relative_to(root).as_posix()
    _, _, folder_shot = open_viewer(browser, f"{range_server}/{folder}/index.html")
    assert np.abs(shot.astype(int) - folder_shot.astype(int)).mean() < 2.0


@pytest.mark.browser
def test_archive_viewer_on_a_server_without_range(
    browser: object,  # noqa: F811
    plain_server: str,
    root: Path,
    exports: dict[str, dict[str, Any]],
) -> None:
    export = exports["dzi"]
    responses, failed, shot = open_viewer(
        browser, f"{plain_server}/{export['packed'].relative_to(root).as_posix()}/index.html"
    )
    reads = [s for u, s in responses if u.endswith(export["zip"].name)]
    assert reads == [200], responses  # the whole archive once, tiles then sliced from memory
    assert all(s < 400 for _, s in responses) and not failed
    assert_not_blank(shot)


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["dzi", "xyz"])
def test_archive_viewer_from_file_url_asks_for_the_archive(
    browser: Any,  # noqa: F811
    exports: dict[str, dict[str, Any]],
    scheme: str,
) -> None:
    export = exports[scheme]
    page = browser.new_page(viewport={"width": 800, "height": 600})
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    page.goto((export["packed"] / "index.html").as_uri())
    notice = page.locator("#tilearchive-notice")
    assert "python -m http.server" in notice.inner_text()
    page.set_input_files("#tilearchive-notice input", str(export["zip"]))
    notice.wait_for(state="detached")
    page.wait_for_timeout(2000)  # viewers blend tiles in
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
    page.close()
    assert not failed, failed
    assert_not_blank(shot)


def test_cli_tile_archive(exports: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    version = exports["xyz"]["result"]["version"]
    cmd = [sys.executable, "-m", "imagelib", "tile", version, "--scheme", "xyz", "--out", str(tmp_path)]
    proc = subprocess.run(
        [*cmd, "--archive", "--workers", "1", "--embed", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["archive"] == f"{version}.zip"
    assert (tmp_path / result["archive"]).read_bytes() == exports["xyz"]["zip"].read_bytes()
    assert 'TileArchive.start("' + result["archive"] in (tmp_path / "index.html").read_text()
    assert not any(p.suffix == ".png" for p in tmp_path.rglob("*"))


def test_archive_to_object_store_serves_ranges(s3_store: str, tmp_path: Path) -> None:
    import boto3

    version = ingest_array(tmp_path, "s3archive", smooth_rgb(300, 500))  # stored in the bucket too
    bucket = s3_store.split("/")[2]
    result = tile_version(version, "dzi", f"s3://{bucket}/site", embed=True, archive=True)
    tile_version(version, "dzi", tmp_path / "local")
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="site/")["Contents"]}
    assert {f"site/{result['archive']}", "site/tilearchive.js", "site/index.html"} <= keys
    assert not any(k.endswith(".jpg") for k in keys)
    key = f"site/{result['archive']}"
    packed = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    expected = tile_files(tmp_path / "local")
    for name, offset, size in read_index(packed)[::7]:  # a bucket answers the reader's Range requests
        start = offset + 30 + len(name.encode())
        got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + size - 1}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == expected[name], name
