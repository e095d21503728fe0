"""``make hub``: the whole platform on loopback in one command.

Starts the dev IdP (realm ``hub/keycloak/realm-export.json``), ``imagelib serve`` trusting it, and
JupyterHub (``hub/jupyterhub_config.py``: Keycloak login, configurable-http-proxy from node_modules, a
local-process spawner, the idle culler). The hub's client secret and the ``auth_state`` key are generated
for the session unless given (``IMAGELIB_HUB_CLIENT_SECRET``, ``JUPYTERHUB_CRYPT_KEY``); the IdP then reads
a session copy of the realm carrying that secret. Ctrl-C stops everything. Tests use :class:`LocalHub`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "hub" / "jupyterhub_config.py"
REALM = ROOT / "hub" / "keycloak" / "realm-export.json"
#: demo logins printed at start (the realm's README lists their namespace roles)
DEMO_USERS = {
    "alice": "landsat: read, write, tile",
    "bob": "*: read",
    "carol": "microscopy: read, tile",
    "admin": "hub admin; *: admin",
    "dave": "no hub role: refused at login",
}


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_realm(
    source: Path,
    dest: Path,
    client_secret: str,
    *,
    access_token_lifespan: int | None = None,
    extra_users: tuple[str, ...] | list[str] = (),
) -> Path:
    """A copy of the realm with this session's hub client secret (and, for tests, a shorter token
    lifetime and extra ``jupyterhub:user`` users named ``<name>`` with password ``<name>-password``)."""
    realm = json.loads(source.read_text(encoding="utf-8"))
    for client in realm["clients"]:
        if client["clientId"] == "jupyterhub":
            client["secret"] = client_secret
    if access_token_lifespan is not None:
        realm["accessTokenLifespan"] = access_token_lifespan
    for name in extra_users:
        realm["users"].append(
            {
                "username": name,
                "enabled": True,
                "email": f"{name}@example.org",
                "credentials": [{"type": "password", "value": f"{name}-password", "temporary": False}],
                "realmRoles": ["default-roles-imagelib", "imagelib:landsat:read", "jupyterhub:user"],
            }
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(realm, indent=2), encoding="utf-8")
    dest.chmod(0o600)  # it holds the session's client secret
    return dest


def wait_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120, expect: int | None = None
) -> None:
    """Poll ``url`` until it answers (``expect``, or any status below 500) or the process dies (its log
    tail raised)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode} while starting:\n{tail}")
        try:
            code = httpx.get(url, timeout=2).status_code
            if code == expect or (expect is None and code < 500):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s (log: {log})")


@dataclass
class LocalHub:
    """The loopback platform: ``with LocalHub(state) as hub: hub.url, hub.issuer, hub.api_url``.

    With ``issuer`` given, that IdP is used (tests run the dev IdP in-process) and ``client_secret`` must
    be the realm's; otherwise a dev IdP is started on ``idp_port`` with a session copy of the realm."""

    state: Path
    port: int = 8000
    idp_port: int = 8080
    api_port: int = 8090
    hub_port: int = 8081
    proxy_api_port: int = 8001
    issuer: str | None = None
    client_secret: str | None = None
    crypt_key: str | None = None
    realm: Path = REALM
    access_token_lifespan: int | None = None
    extra_users: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The hub's public URL (through configurable-http-proxy)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The imagelib API."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def logs(self) -> Path:
        """Where each process writes its log."""
        return self.state / "logs"

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv, env=env, cwd=self.state, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def start(self) -> LocalHub:
        """Start IdP (unless given), API and hub; return once the hub answers."""
        self.state = self.state.resolve()
        self.state.mkdir(parents=True, exist_ok=True)
        self.client_secret = self.client_secret or secrets.token_urlsafe(32)
        self.crypt_key = self.crypt_key or secrets.token_hex(32)
        merged = {**os.environ, **self.env}  # a None in ``env`` removes the variable
        base = {k: v for k, v in merged.items() if v is not None}
        base.pop("JUPYTERHUB_API_TOKEN", None)  # never leak a surrounding hub's identity into this one
        py = sys.executable
        if self.issuer is None:
            realm = session_realm(
                self.realm,
                self.state / "realm.json",
                self.client_secret,
                access_token_lifespan=self.access_token_lifespan,
                extra_users=self.extra_users,
            )
            argv = [py, "-m", "imagelib", "dev-idp", "--realm", str(realm), "--port", str(self.idp_port)]
            argv += ["--keys", str(self.state / "idp-keys.json")]
            proc = self._start("idp", argv, base)
            self.issuer = f"http://127.0.0.1:{self.idp_port}/realms/imagelib"
            wait_http(f"{self.issuer}/.well-known/openid-configuration", proc, self.logs / "idp.log")
        env = {**base, "IMAGELIB_OIDC_ISSUER": self.issuer, "IMAGELIB_API_URL": self.api_url}
        api = self._start("api", [py, "-m", "imagelib", "serve", "--port", str(self.api_port)], env)
        hub_env = {
            **env,
            "JUPYTERHUB_CRYPT_KEY": self.crypt_key,
            "IMAGELIB_HUB_CLIENT_SECRET": self.client_secret,
            "IMAGELIB_HUB_URL": self.url,
            "IMAGELIB_HUB_STATE": str(self.state),
            "IMAGELIB_HUB_PORT": str(self.hub_port),
            "IMAGELIB_HUB_PROXY_API_PORT": str(self.proxy_api_port),
        }
        hub_bin = Path(py).parent / "jupyterhub"
        hub = self._start("jupyterhub", [str(hub_bin), "-f", str(CONFIG)], hub_env)
        wait_http(f"{self.api_url}/health", api, self.logs / "api.log")
        # 200 only once the hub has added its route to the proxy (the proxy alone answers 404)
        wait_http(f"{self.url}/hub/api/", hub, self.logs / "jupyterhub.log", timeout=180, expect=200)
        return self

    def stop(self) -> None:
        """SIGTERM to each process group (the hub stops its servers), newest first; SIGKILL after 90 s."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(90)  # the hub stops every user server first: slow on a busy machine
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.procs.clear()

    def __enter__(self) -> LocalHub:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def banner(self) -> str:
        """What ``make hub`` prints once everything answers."""
        users = "\n".join(f"  {u:<6} {u}-password   ({what})" for u, what in DEMO_USERS.items())
        return (
            f"JupyterHub        {self.url}/hub/login\n"
            f"identity provider {self.issuer}\n"
            f"imagelib API      {self.api_url}/v1/docs\n"
            f"Panel viewer      {self.url}/user/<name>/imagelib-viewer/  (after the server starts)\n"
            f"logs and state    {self.state}\n"
            f"demo logins (development only):\n{users}\n"
            "Ctrl-C stops everything."
        )


def main(argv: list[str] | None = None) -> int:
    """``python hub/local.py [--state DIR] [--port 8000]``: run until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("IMAGELIB_HUB_STATE", "hub-state")))
    parser.add_argument("--port", type=int, default=8000, help="the hub's public port (loopback)")
    parser.add_argument("--idp-port", type=int, default=8080)
    parser.add_argument("--api-port", type=int, default=8090)
    args = parser.parse_args(argv)
    hub = LocalHub(
        args.state,
        port=args.port,
        idp_port=args.idp_port,
        api_port=args.api_port,
        client_secret=os.environ.get("IMAGELIB_HUB_CLIENT_SECRET"),
        crypt_key=os.environ.get("JUPYTERHUB_CRYPT_KEY"),
    )
    # SIGTERM (a supervisor, `timeout`) stops the children too, as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with hub:
            print(hub.banner(), flush=True)
            while all(p.poll() is None for p in hub.procs):
                time.sleep(1)
            dead = [p for p in hub.procs if p.poll() is not None]
            print(
                f"stopped: {dead[0].args[:3]} exited ({dead[0].returncode}); see {hub.logs}", file=sys.stderr
            )
            return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"make hub: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
