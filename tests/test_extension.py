"""The Jupyter server extension (extensions/imagelib_jupyter) in a real ``jupyter server`` subprocess:
enabled by the install alone, tiles only with the server's token, the same bytes as ``render_tile``,
ETag/304, immutable caching, coded errors with the table's HTTP status, no path tricks."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from imagelib_jupyter.launch import JupyterServer

import imagelib
from imagelib.context import Library
from imagelib.errors import TABLE
from imagelib.tiling import render_tile, renderer_for
from imagelib.tiling.http import MEDIA, etag
from tests.conftest import DATA

TOKEN = "imagelib-test-token-7c1f"
BASE = "/lab-user/"  # a non-root base_url, as behind JupyterHub's proxy
PNG = b"\x89PNG"
CHAIN = [{"op": "gaussian", "sigma": 1.5}]


@dataclass
class Server:
    """A running jupyter server with the extension, and the library it serves."""

    url: str
    lib: Library
    geo: str  # georeferenced RGB (world.rgb.tif)
    plain: str  # plain TIFF, no CRS (chessboard)
    log: Path

    def get(self, path: str, token: str | None = TOKEN, **kw: object) -> httpx.Response:
        """GET ``{base_url}imagelib/tiles/{path}`` with the token in the Authorization header."""
        headers = dict(kw.pop("headers", {}) or {})  # type: ignore[call-overload]
        if token:
            headers["Authorization"] = f"token {token}"
        return httpx.get(f"{self.url}imagelib/tiles/{path}", headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Ingest two samples into a fresh home; start ``jupyter server`` on it with nothing but the install's
    own config (no ``--ServerApp.jpserver_extensions``: the shipped config file must enable it)."""
    root = tmp_path_factory.mktemp("jupyter")
    home = root / "home"
    lib = imagelib.connect(home)
    geo = imagelib.ingest(DATA / "world.rgb.tif", "ext", "world", lib=lib)["version"]
    plain = imagelib.ingest(DATA / "chessboard_GRAY_U16.tif", "ext", "chess", lib=lib)["version"]
    env = {"IMAGELIB_HOME": str(home), "IMAGELIB_STORE": None, "IMAGELIB_CATALOG": None}
    with JupyterServer(root, token=TOKEN, base_url=BASE, env=env) as jupyter:
        yield Server(jupyter.url, lib, geo, plain, jupyter.log)


def coded(response: httpx.Response, code: str) -> None:
    """A coded JSON error with the table's HTTP status."""
    assert response.status_code == TABLE[code].http, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_enabled_by_the_install_alone(server: Server) -> None:
    """The install's config (what ``jupyter server extension list`` reads) enables it, and the server,
    started without any extension flag, loaded it."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    enabled = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    assert enabled.get("imagelib_jupyter") is True
    assert "imagelib_jupyter | extension was successfully loaded" in server.log.read_text()


def test_server_proxy_entry_for_the_panel_app(server: Server) -> None:
    """jupyter-server-proxy lists the Panel app from the package's entry point, launched by our CLI."""
    from imagelib_jupyter.proxy import viewer

    info = httpx.get(f"{server.url}server-proxy/servers-info", headers={"Authorization": f"token {TOKEN}"})
    entries = {item["name"]: item for item in info.json()["server_processes"]}
    assert entries["imagelib-viewer"]["launcher_entry"]["title"] == "imagelib viewer"
    assert viewer()["command"][:2] == ["imagelib", "viewer"] and "{port}" in viewer()["command"]


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_no_tiles_without_the_servers_token(server: Server, token: str | None) -> None:
    """No token or a wrong one: jupyter_server's API answer, 403, and no tile bytes (never a redirect)."""
    for path in (
        f"{server.geo}.dzi",
        f"{server.plain}_files/8/0_0.png",
        f"{server.geo}/1/0/0.png",
        f"{server.geo}/1/0/0.png?chain={quote(json.dumps(CHAIN))}",
        f"{server.geo}/99/0/0.png",
    ):
        response = server.get(path, token=token, follow_redirects=False)
        assert response.status_code == 403, (path, response.status_code)
        assert not response.headers["content-type"].startswith(("image/", "application/xml"))
        assert PNG not in response.content and b"<Image" not in response.content
        assert "etag" not in response.headers


def test_dzi_tiles_equal_render_tile(server: Server) -> None:
    """DZI tiles of every level of a plain TIFF (first and last tile), in each format: render_tile's bytes."""
    grid = renderer_for(server.plain, lib=server.lib).dzi_grid()
    for level, fmt in [(level, "png") for level in range(grid.levels)] + [(8, "jpg"), (6, "webp")]:
        for col, row in {(0, 0), tuple(n - 1 for n in grid.tile_counts(level))}:
            got = server.get(f"{server.plain}_files/{level}/{col}_{row}.{fmt}")
            assert got.status_code == 200, got.text
            assert got.headers["content-type"] == MEDIA[fmt]
            assert got.content == render_tile(server.plain, level, col, row, fmt=fmt, lib=server.lib)


def test_xyz_tiles_and_chains_equal_render_tile(server: Server) -> None:
    """XYZ tiles of a georeferenced version, with and without a chain; the token may also be ?token=."""
    for z, x, y in ((0, 0, 0), (1, 1, 0), (1, 0, 1)):
        got = server.get(f"{server.geo}/{z}/{x}/{y}.png")
        assert got.content == render_tile(server.geo, z, x, y, scheme="xyz", lib=server.lib)
    chained = server.get(f"{server.geo}/1/0/0.png?chain={quote(json.dumps(CHAIN))}&token={TOKEN}", token=None)
    assert chained.status_code == 200, chained.text
    assert chained.content == render_tile(server.geo, 1, 0, 0, chain=CHAIN, scheme="xyz", lib=server.lib)
    assert chained.content != server.get(f"{server.geo}/1/0/0.png").content


def test_descriptor(server: Server) -> None:
    """The .dzi descriptor is the grid's XML, naming ?format= (jpg by default)."""
    grid = renderer_for(server.plain, lib=server.lib).dzi_grid()
    got = server.get(f"{server.plain}.dzi")
    assert got.status_code == 200 and got.headers["content-type"] == "application/xml"
    assert got.text == grid.xml("jpg") and 'Width="200"' in got.text
    assert server.get(f"{server.plain}.dzi?format=png").text == grid.xml("png")
    coded(server.get(f"{server.plain}.dzi?format=tiff"), "USAGE")


def test_etag_304_and_caching(server: Server) -> None:
    """Strong ETag from (version, tile, format, canonical chain), the API's formula; 304 on revalidation."""
    path = f"{server.geo}/1/0/0.png"
    first = server.get(path)
    tag = first.headers["etag"]
    assert tag == etag(server.geo, "xyz", (1, 0, 0), "png", None) and not tag.startswith("W/")
    from imagelib.api.tiles import etag as api_etag

    assert tag == api_etag(server.geo, "xyz", (1, 0, 0), "png", None)  # one client cache for both servers
    assert first.headers["cache-control"] == "private, max-age=31536000, immutable"
    for header in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        again = server.get(path, headers={"If-None-Match": header})
        assert again.status_code == 304 and again.content == b"", header
        assert again.headers["etag"] == tag
    assert server.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    # the chain is part of the tag in canonical form: key order and defaults do not matter
    spelled = quote(json.dumps([{"sigma": 1.5, "truncate": 4.0, "op": "gaussian"}]))
    chained = server.get(f"{path}?chain={spelled}")
    assert chained.headers["etag"] == etag(server.geo, "xyz", (1, 0, 0), "png", CHAIN) != tag
    other_fmt = server.get(f"{server.geo}/1/0/0.webp")
    assert other_fmt.headers["etag"] not in (tag, chained.headers["etag"])
    descriptor = server.get(f"{server.geo}.dzi").headers["etag"]
    assert server.get(f"{server.geo}.dzi", headers={"If-None-Match": descriptor}).status_code == 304


@pytest.mark.parametrize(
    ("chain", "code"),
    [
        ("[{", "CHAIN_INVALID"),
        ('{"op": "gaussian"}', "CHAIN_INVALID"),
        ('[{"op": "no-such-op"}]', "OP_UNKNOWN"),
        ('[{"op": "gaussian", "sigma": -3}]', "PARAM_INVALID"),
        ('[{"op": "gaussian", "sigma": 1, "bogus": 2}]', "PARAM_INVALID"),
    ],
)
def test_malformed_chain_is_400_with_the_chain_code(server: Server, chain: str, code: str) -> None:
    """A chain that fails validation: 400 and the chain error's code, no ETag, no caching."""
    for path in (f"{server.geo}/1/0/0.png", f"{server.plain}_files/8/0_0.png", f"{server.plain}.dzi"):
        response = server.get(f"{path}?chain={quote(chain)}")
        coded(response, code)
        assert response.status_code == 400
        assert "etag" not in response.headers and "immutable" not in response.headers.get("cache-control", "")


def test_oversized_chain(server: Server) -> None:
    """A chain longer than the limit is PAYLOAD_TOO_LARGE before any JSON parsing."""
    huge = quote(json.dumps([{"op": "gaussian", "sigma": 1.0}] * 400))
    coded(server.get(f"{server.geo}/1/0/0.png?chain={huge}"), "PAYLOAD_TOO_LARGE")


def test_not_found_codes(server: Server) -> None:
    """Unknown version, tile outside the pyramid, XYZ of a version without a CRS: the table's status."""
    coded(server.get(f"{'0' * 32}/0/0/0.png"), "VERSION_NOT_FOUND")
    coded(server.get(f"{'0' * 32}.dzi"), "VERSION_NOT_FOUND")
    coded(server.get(f"{server.geo}/1/5/0.png"), "TILE_NOT_FOUND")
    coded(server.get(f"{server.plain}_files/99/0_0.png"), "TILE_NOT_FOUND")
    coded(server.get(f"{server.plain}_files/8/7_0.png"), "TILE_NOT_FOUND")
    coded(server.get(f"{server.plain}/0/0/0.png"), "NOT_GEOREFERENCED")
    coded(server.get("NOT-A-VERSION.dzi"), "USAGE")
    coded(server.get(f"{server.geo}/1/0/0.gif"), "ROUTE_NOT_FOUND")


def raw_get(server: Server, path: str) -> tuple[int, bytes]:
    """GET a path byte for byte (httpx would normalise ``..`` segments away)."""
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.putheader("Authorization", f"token {TOKEN}")
    conn.endheaders()
    response = conn.getresponse()
    return response.status, response.read()


@pytest.mark.parametrize(
    "tail",
    [
        "../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd.dzi",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2fcatalog.db/0/0/0.png",
        "%2Fetc%2Fpasswd_files/0/0_0.png",
        "{geo}/../../../catalog.db",
        "{geo}%2F..%2F..%2Fcatalog.db.dzi",
        "..%5C..%5Ccatalog.db.dzi",
    ],
)
def test_path_tricks_never_read_a_file(server: Server, tail: str) -> None:
    """``../`` in every spelling: a coded 4xx, never a file's bytes."""
    status, body = raw_get(server, f"{BASE}imagelib/tiles/{tail.format(geo=server.geo)}")
    assert 400 <= status < 500, (tail, status, body[:200])
    assert b"root:" not in body and b"SQLite format" not in body and PNG not in body


@pytest.mark.parametrize(
    ("query", "code"),
    [("axis=w", "USAGE"), ("index=-1", "USAGE"), ("index=x1", "USAGE"), ("axis=y&index=0", "USAGE")],
)
def test_bad_slice_parameters_are_400(server: Server, query: str, code: str) -> None:
    """``?axis=&index=`` choose a slice of a volume: a malformed value, or a slice of a 2D image, is a
    coded 400 with no tile bytes (volumes' slices are checked against render_tile in test_widgets_viewer)."""
    response = server.get(f"{server.plain}_files/0/0_0.png?{query}")
    assert response.status_code == 400, response.text
    coded(response, code)
    assert "etag" not in response.headers
