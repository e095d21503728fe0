"""Running the dev IdP: blocking (``imagelib dev-idp``) or in a background thread (tests, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from imagelib.auth.loopback import is_loopback
from imagelib.errors import UsageError
from imagelib.idp.app import DevIdP
from imagelib.idp.keys import SigningKeys
from imagelib.idp.realm import Realm

#: The realm file in a source checkout (the same file a real Keycloak imports).
DEFAULT_REALM = Path(__file__).resolve().parents[2] / "hub" / "keycloak" / "realm-export.json"


def load_realm(realm: Realm | str | Path | None) -> Realm:
    """A realm object from itself, a file, or the checkout's default realm file."""
    if isinstance(realm, Realm):
        return realm
    path = Path(realm) if realm else DEFAULT_REALM
    if not path.is_file():
        raise UsageError(f"realm file {path} not found (pass --realm FILE)", code="USAGE", field="realm")
    return Realm.load(path)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _base_url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host.strip('[]')}]:{port}" if ":" in host else f"http://{host}:{port}"


def _prepare(
    realm: Realm | str | Path | None,
    host: str,
    port: int,
    keys_file: str | Path | None,
    allow_remote: bool,
    public_url: str | None,
) -> tuple[DevIdP, uvicorn.Server, socket.socket]:
    if not allow_remote and not is_loopback(host):
        raise UsageError(
            f"refusing to serve the dev IdP on {host}: it has known passwords (use --allow-remote to insist)",
            code="USAGE",
            field="host",
        )
    loaded = load_realm(realm)
    sock = _bind(host, port)
    idp = DevIdP(loaded, public_url or _base_url(sock, host), SigningKeys(keys_file))
    config = uvicorn.Config(idp.app, log_level="warning", access_log=False, lifespan="off")
    return idp, uvicorn.Server(config), sock


def serve(
    realm: Realm | str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    keys_file: str | Path | None = None,
    allow_remote: bool = False,
    public_url: str | None = None,
    on_ready: Callable[[DevIdP], None] | None = None,
) -> None:
    """Serve the dev IdP until interrupted; ``on_ready`` gets it once the socket listens."""
    idp, server, sock = _prepare(realm, host, port, keys_file, allow_remote, public_url)
    if on_ready is not None:
        on_ready(idp)
    # Access logs stay off: logout URLs carry ID tokens in their query string.
    server.run(sockets=[sock])


@contextmanager
def running(
    realm: Realm | str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    keys_file: str | Path | None = None,
) -> Iterator[DevIdP]:
    """The dev IdP served from a background thread (port 0: a free one); stopped on exit."""
    idp, server, sock = _prepare(realm, host, port, keys_file, False, None)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dev-idp", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dev IdP did not start")
        time.sleep(0.02)
    try:
        yield idp
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
