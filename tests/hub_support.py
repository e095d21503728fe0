"""The local hub for tests: dev IdP in-process (its sessions can be aged), ``imagelib serve`` and JupyterHub
as real processes on free loopback ports, a library with a ``landsat`` and a ``microscopy`` version, and
HTTP helpers that log in through the IdP's login page (authorization code + PKCE, driven by the hub)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import imagelib
from hub.local import REALM, LocalHub, session_realm
from imagelib.idp import DevIdP, running
from tests.conftest import DATA, free_port

#: the realm's own secret of the ``jupyterhub`` client (tests run the IdP on the export as it is)
CLIENT_SECRET = "jupyterhub-dev-secret"
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")


@dataclass
class Platform:
    hub: LocalHub
    idp: DevIdP
    home: Path
    landsat: str  # a version in namespace landsat (alice: tile; carol: none)
    microscopy: str  # a version in namespace microscopy (carol: tile)

    def logs(self) -> str:
        """Every process log written so far."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.hub.logs.glob("*.log")))


@contextmanager
def platform(
    root: Path, *, lifetime: int = 60, margin: float = 30, extra_users: tuple[str, ...] = ()
) -> Iterator[Platform]:
    """The whole platform on loopback; stopped (servers included) on exit."""
    home = root / "lib"
    lib = imagelib.connect(home)
    landsat = imagelib.ingest(DATA / "world.rgb.tif", "landsat", "world", lib=lib)["version"]
    microscopy = imagelib.ingest(DATA / "s_1_t_1_c_1_z_1.ome.tiff", "microscopy", "cells", lib=lib)["version"]
    realm = session_realm(
        REALM, root / "realm.json", CLIENT_SECRET, access_token_lifespan=lifetime, extra_users=extra_users
    )
    env: dict[str, str | None] = {
        "IMAGELIB_HOME": str(home),
        "IMAGELIB_STORE": None,
        "IMAGELIB_CATALOG": None,
        "IMAGELIB_QUEUE": None,
        "IMAGELIB_HUB_REFRESH_MARGIN": str(margin),
    }
    with running(realm) as idp:
        hub = LocalHub(
            root / "hub",
            port=free_port(),
            api_port=free_port(),
            hub_port=free_port(),
            proxy_api_port=free_port(),
            issuer=idp.issuer,
            client_secret=CLIENT_SECRET,
            env=env,
        )
        with hub:
            yield Platform(hub, idp, home, landsat, microscopy)


def login_page(client: httpx.Client, hub: str) -> tuple[httpx.Response, str]:
    """Start the hub's OAuth login and follow it to the IdP's form: (page, form action URL)."""
    page = client.get(f"{hub}/hub/oauth_login", follow_redirects=True)
    assert page.status_code == 200 and 'id="kc-form-login"' in page.text, page.text[:300]
    return page, html.unescape(re.search(r'action="([^"]+)"', page.text).group(1))


def login(hub: str, user: str, password: str | None = None) -> httpx.Client:
    """A client logged in to the hub as ``user`` through the IdP's login page (code + PKCE)."""
    client = httpx.Client(timeout=120, follow_redirects=True)
    _, action = login_page(client, hub)
    answer = client.post(action, data={"username": user, "password": password or f"{user}-password"})
    assert answer.status_code == 200, (answer.url, answer.text[:300])
    assert str(answer.url).startswith(f"{hub}/"), answer.url  # the hub's home, spawn page or the server
    return client


def xsrf(client: httpx.Client) -> dict[str, str]:
    """The hub's XSRF header for API calls made with the login cookie."""
    return {"X-XSRFToken": client.cookies.get("_xsrf", path="/hub/") or ""}


def spawn(client: httpx.Client, hub: str, user: str, profile: str = "cpu", timeout: float = 240) -> float:
    """Start ``user``'s server through the options form; seconds until the hub reports it ready."""
    start = time.monotonic()
    form = {"profile": profile, "_xsrf": client.cookies.get("_xsrf", path="/hub/") or ""}
    answer = client.post(f"{hub}/hub/spawn", data=form, follow_redirects=False)
    assert answer.status_code in (302, 303), answer.text[:500]
    while time.monotonic() - start < timeout:
        model = client.get(f"{hub}/hub/api/users/{user}", headers=xsrf(client)).json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return time.monotonic() - start
        if not server and not model.get("pending") and time.monotonic() - start > 5:
            pytest.fail(f"{user}'s server stopped while starting: {model}")
        time.sleep(0.5)
    pytest.fail(f"{user}'s server not ready after {timeout} s")


def server_env(user: str) -> dict[str, str]:
    """The environment of ``user``'s running single-user server (its hub API token included)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            raw = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"jupyterhub-singleuser" not in cmdline:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        if env.get("JUPYTERHUB_USER") == user:
            return env
    raise AssertionError(f"no single-user server of {user} is running")


def open_server(client: httpx.Client, hub: str, user: str) -> None:
    """Visit the server once so its own OAuth (with the hub) sets the server cookie for API requests."""
    page = client.get(f"{hub}/user/{user}/lab")
    assert page.status_code == 200 and str(page.url).startswith(f"{hub}/user/{user}/"), (
        page.url,
        page.text[:300],
    )
