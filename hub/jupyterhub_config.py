"""JupyterHub for imagelib: Keycloak login (oauthenticator), fresh tokens for kernels, CPU/GPU profiles.

Everything comes from the environment, so the same file serves ``make hub`` (loopback, the dev IdP, a local
process spawner) and the Helm deployment (which overrides the spawner with KubeSpawner and its profiles):

Required: ``IMAGELIB_OIDC_ISSUER`` (the Keycloak realm URL; every endpoint comes from its discovery
document), ``JUPYTERHUB_CRYPT_KEY`` (encrypts ``auth_state``, the users' tokens: ``openssl rand -hex 32``),
``IMAGELIB_HUB_CLIENT_SECRET`` (secret of the confidential client). Optional, with defaults:
``IMAGELIB_HUB_CLIENT_ID`` (``jupyterhub``), ``IMAGELIB_HUB_URL`` (``http://127.0.0.1:8000``, public URL;
the OAuth callback is under it), ``IMAGELIB_HUB_USER_ROLES`` / ``IMAGELIB_HUB_ADMIN_ROLES``
(``jupyterhub:user`` / ``jupyterhub:admin``: realm roles, comma separated, that may log in / are hub
admins), ``IMAGELIB_HUB_STATE`` (current directory: database, cookie secret, the local spawner's homes),
``IMAGELIB_HUB_PORT`` / ``IMAGELIB_HUB_PROXY_API_PORT`` (8081 / 8001, loopback), ``IMAGELIB_HUB_CULL_TIMEOUT``
(3600 s idle before the culler stops a server), ``IMAGELIB_HUB_REFRESH_MARGIN`` (30: the hub refreshes an
access token with fewer seconds than this left).

A missing required variable stops the hub at start with one line naming it (exit status 2).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jupyterhub.spawner import SimpleLocalProcessSpawner
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLogoutHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from imagelib.auth.kernel import unverified_claims
from imagelib.config import decimal

c = get_config()  # noqa: F821 -- provided by JupyterHub when it executes this file


def fail(variable: str, why: str) -> None:
    """Stop the hub with one clear line (SystemExit passes through traitlets' config loader untouched)."""
    print(f"jupyterhub_config.py: configuration error: {variable} {why}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def required(variable: str, hint: str) -> str:
    """The value of a required environment variable, or a configuration error naming it."""
    value = os.environ.get(variable, "").strip()
    if not value:
        fail(variable, f"is not set: {hint}")
    return value


def discover(issuer: str) -> dict[str, Any]:
    """The issuer's OpenID configuration (all endpoints come from here, none are hand-copied)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            doc = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        fail("IMAGELIB_OIDC_ISSUER", f"= {issuer!r}: cannot read its discovery document {url} ({exc})")
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        fail("IMAGELIB_OIDC_ISSUER", f"= {issuer!r}, but the discovery document names {doc.get('issuer')!r}")
    return doc


def whole(variable: str, default: int) -> int:
    """A whole number (ASCII digits) from the environment, or a configuration error naming it."""
    value = os.environ.get(variable, "").strip() or str(default)
    if not decimal(value):
        fail(variable, f"= {value!r} is not a whole number of ASCII digits")
    return int(value)


def roles(variable: str, default: str) -> set[str]:
    """A comma-separated role list from the environment."""
    return {r.strip() for r in os.environ.get(variable, default).split(",") if r.strip()}


ISSUER = required(
    "IMAGELIB_OIDC_ISSUER", "the Keycloak realm URL, e.g. http://127.0.0.1:8080/realms/imagelib"
)
required(
    "JUPYTERHUB_CRYPT_KEY", "auth_state (the users' tokens) must be encrypted; use `openssl rand -hex 32`"
)
CLIENT_SECRET = required("IMAGELIB_HUB_CLIENT_SECRET", "the secret of the hub's OIDC client")
CLIENT_ID = os.environ.get("IMAGELIB_HUB_CLIENT_ID", "jupyterhub")
HUB_URL = os.environ.get("IMAGELIB_HUB_URL", "http://127.0.0.1:8000").rstrip("/")
STATE = Path(os.environ.get("IMAGELIB_HUB_STATE", ".")).resolve()
USER_ROLES = roles("IMAGELIB_HUB_USER_ROLES", "jupyterhub:user")
ADMIN_ROLES = roles("IMAGELIB_HUB_ADMIN_ROLES", "jupyterhub:admin")
REFRESH_MARGIN = whole("IMAGELIB_HUB_REFRESH_MARGIN", 30)
HUB_PORT = whole("IMAGELIB_HUB_PORT", 8081)
PROXY_API_PORT = whole("IMAGELIB_HUB_PROXY_API_PORT", 8001)
CULL_TIMEOUT = whole("IMAGELIB_HUB_CULL_TIMEOUT", 3600)
OIDC = discover(ISSUER)
BIN = Path(sys.executable).parent  # the environment JupyterHub runs in also has imagelib and the lab


def hub_roles(auth_state: dict[str, Any]) -> list[str]:
    """The realm roles (``realm_access.roles`` of the access token) that mean something to the hub."""
    # not verified here: the token came straight from the issuer over the hub's own back channel (the API
    # and the extension verify every token they are sent)
    claims = unverified_claims(auth_state.get("access_token") or "")
    realm_roles = claims.get("realm_access", {}).get("roles", [])
    return sorted(r for r in realm_roles if isinstance(r, str) and r in USER_ROLES | ADMIN_ROLES)


class KeycloakLogoutHandler(OAuthLogoutHandler):
    """Logout ends the Keycloak session too: its refresh token is revoked over the back channel, the
    tokens leave ``auth_state`` (kernels asking for a token get 401 from then on), and the browser goes
    through the end-session endpoint (``logout_redirect_url``) so the IdP's cookie is cleared as well."""

    async def handle_logout(self) -> None:
        """Revoke at the IdP and forget the user's tokens."""
        await super().handle_logout()
        user = self.current_user
        if user is None:
            return
        state = await user.get_auth_state() or {}
        refresh = state.get("refresh_token")
        if refresh:
            body = urlencode(
                {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": refresh}
            )
            request = HTTPRequest(OIDC["end_session_endpoint"], method="POST", body=body, request_timeout=10)
            try:
                await AsyncHTTPClient().fetch(request, raise_error=False)
            except OSError as exc:  # the IdP is down: the local logout still happens
                self.log.warning("could not end the IdP session of %s: %s", user.name, exc)
        await user.save_auth_state({"logged_out": int(time.time())})
        self.log.info("ended the IdP session of %s and dropped its tokens", user.name)


class KeycloakOAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator with refresh by the token's own expiry and clear pages for refused codes."""

    logout_handler = KeycloakLogoutHandler

    async def get_token_info(self, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        """The token endpoint's answer; a refusal (bad/replayed code, PKCE mismatch, dead refresh token)
        is a 403 page saying why and one log line with the grant type and the IdP's error (no tokens)."""
        response = await self.httpfetch(
            self.token_url,
            method="POST",
            headers=self.build_token_info_request_headers(),
            body=urlencode(params).encode("utf-8"),
            validate_cert=self.validate_server_cert,
            parse_json=False,
            raise_error=False,
        )
        try:
            info = json.loads(response.body or b"{}")
        except ValueError:
            info = {}
        if response.code == 200 and "access_token" in info:
            return info
        error = f"{info.get('error', response.code)}: {info.get('error_description', 'no description')}"
        self.log.warning(
            "token request (%s) refused by the identity provider: %s", params.get("grant_type"), error
        )
        # message as an argument: tornado %-formats log_message, and IdP text may contain a "%"
        raise web.HTTPError(
            403,
            "%s",
            f"Login failed: the identity provider refused the sign-in ({error}). Please log in again.",
        )

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        """Keep the stored access token fresh: refresh when it has under ``REFRESH_MARGIN`` seconds left.

        True while it has time left (no IdP round trip); False (log in again) when there are no tokens
        or the refresh token is refused, e.g. after logout or past the IdP session's lifetime."""
        state = await user.get_auth_state()
        if not state or not state.get("access_token"):
            return False
        exp = unverified_claims(state["access_token"]).get("exp")
        if isinstance(exp, int | float) and exp - time.time() > REFRESH_MARGIN:
            return True
        refresh = state.get("refresh_token")
        if not refresh:
            return False
        try:
            info = await self.get_token_info(handler, self.build_refresh_token_request_params(refresh))
        except web.HTTPError:
            self.log.info("refresh of %s's tokens refused: a new login is required", user.name)
            return False
        info.setdefault("refresh_token", refresh)
        self.log.info("refreshed the access token of %s", user.name)
        return await self._token_to_auth_model(info)


class RedactOAuthQuery(logging.Filter):
    """Authorization codes and states in a refused callback's URL never reach the log (tornado logs the
    request line of an HTTPError as is; JupyterHub's access log already masks them)."""

    PARAMS = re.compile(r"\b(code|state|session_state)=[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the message with the values masked."""
        message = record.getMessage()
        masked = self.PARAMS.sub(r"\1=[secret]", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


logging.getLogger("tornado.general").addFilter(RedactOAuthQuery())

# -- authentication ---------------------------------------------------------------------------------------
c.JupyterHub.authenticator_class = KeycloakOAuthenticator
a = c.KeycloakOAuthenticator
a.client_id = CLIENT_ID
a.client_secret = CLIENT_SECRET
a.oauth_callback_url = f"{HUB_URL}/hub/oauth_callback"
a.authorize_url = OIDC["authorization_endpoint"]
a.token_url = OIDC["token_endpoint"]
a.userdata_url = OIDC["userinfo_endpoint"]
# the IdP's end-session endpoint (its browser cookie), then back to the hub's login page
a.logout_redirect_url = f"{OIDC['end_session_endpoint']}?" + urlencode(
    {"client_id": CLIENT_ID, "post_logout_redirect_uri": f"{HUB_URL}/hub/login"}
)
a.scope = ["openid", "profile", "email"]
a.username_claim = "preferred_username"
a.enable_pkce = True
a.login_service = "Keycloak"
a.enable_auth_state = True
a.refresh_pre_spawn = True
# Checked often and cheaply: refresh_user only calls the IdP when the token is near its exp.
a.auth_refresh_age = 10
a.manage_groups = True
a.auth_state_groups_key = hub_roles
a.allowed_groups = USER_ROLES
a.admin_groups = ADMIN_ROLES
a.custom_403_message = (
    "Your account may not use this hub: it has none of the roles "
    f"{', '.join(sorted(USER_ROLES | ADMIN_ROLES))} in the identity provider. "
    "Ask an administrator for access."
)

# -- the hub, the proxy, the state ---------------------------------------------------------------------------
STATE.mkdir(parents=True, exist_ok=True)
c.JupyterHub.bind_url = f"{HUB_URL}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{HUB_PORT}"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PROXY_API_PORT}"
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
_chp = Path(__file__).resolve().parents[1] / "node_modules" / ".bin" / "configurable-http-proxy"
if _chp.exists():  # the npm copy pinned in package.json; else one on PATH (the z2jh image has its own)
    c.ConfigurableHTTPProxy.command = [str(_chp)]
elif not shutil.which("configurable-http-proxy"):
    fail("configurable-http-proxy", "is not installed: run `npm ci` in the checkout (package.json pins it)")

# -- roles: the server token reads its user's auth_state and nothing more ---------------------------------
SERVER_SCOPES = ["users:activity!user", "access:servers!server", "admin:auth_state!user"]
c.Spawner.server_token_scopes = SERVER_SCOPES
c.JupyterHub.load_roles = [
    # a server token gets the subset of these its owner holds: users must hold admin:auth_state!user
    {"name": "user", "scopes": ["self", "admin:auth_state!user"]},
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    },
]
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={CULL_TIMEOUT}",
        ],
    }
]

# -- profiles: the KubeSpawner list (Helm uses it as is), rendered as a form for the local spawner --------
PROFILES: list[dict[str, Any]] = [
    {
        "display_name": "CPU",
        "slug": "cpu",
        "description": "NumPy backend; 2 CPUs, 8 GiB",
        "default": True,
        "kubespawner_override": {
            "cpu_limit": 2,
            "mem_limit": "8G",
            "environment": {"IMAGELIB_PROFILE": "cpu"},
        },
    },
    {
        "display_name": "GPU",
        "slug": "gpu",
        "description": "one NVIDIA GPU, CuPy backend and a dask-cuda cluster (NumPy when no device is found)",
        "kubespawner_override": {
            "cpu_limit": 8,
            "mem_limit": "32G",
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
            "environment": {"IMAGELIB_PROFILE": "gpu"},
        },
    },
]


def profile_form(profiles: list[dict[str, Any]]) -> str:
    """The options form: one radio button per profile (KubeSpawner draws the same choice from its list)."""
    rows = []
    for p in profiles:
        checked = " checked" if p.get("default") else ""
        rows.append(
            f'<label class="form-check"><input class="form-check-input" type="radio" name="profile" '
            f'value="{html.escape(p["slug"])}"{checked}> <strong>{html.escape(p["display_name"])}</strong> '
            f"&mdash; {html.escape(p['description'])}</label>"
        )
    return "\n".join(rows)


def apply_profile(spawner: Any, user_options: dict[str, Any]) -> None:
    """Apply ``{"profile": slug}`` (from the form or the REST API) to the local spawner's environment."""
    slug = user_options.get("profile") or PROFILES[0]["slug"]
    profile = next((p for p in PROFILES if p["slug"] == slug), None)
    if profile is None:  # the hub answers 400 with this message
        raise ValueError(f"unknown profile {slug!r}; expected one of {[p['slug'] for p in PROFILES]}")
    spawner.environment = {**spawner.environment, **profile["kubespawner_override"]["environment"]}


class ProfileLocalSpawner(SimpleLocalProcessSpawner):
    """Local processes (no system users; loopback development only) with the hub's CPU/GPU profiles."""

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        """``{"profile": slug}``; an unknown slug is refused with a clear message."""
        slug = (formdata.get("profile") or [PROFILES[0]["slug"]])[0]
        if slug not in {p["slug"] for p in PROFILES}:
            raise web.HTTPError(400, f"unknown profile {slug!r}")
        return {"profile": slug}

    async def start(self) -> Any:
        """Install the kernel startup file into the user's home, then start the server."""
        startup = Path(self.home_dir) / ".ipython" / "profile_default" / "startup" / "00-imagelib-profile.py"
        startup.parent.mkdir(parents=True, exist_ok=True)
        startup.write_text("from imagelib.hub_profile import start_profile\n\nstart_profile()\n")
        return await super().start()


c.JupyterHub.spawner_class = ProfileLocalSpawner
c.ProfileLocalSpawner.home_dir_template = str(STATE / "users" / "{username}")
c.ProfileLocalSpawner.options_form = profile_form(PROFILES)
c.ProfileLocalSpawner.apply_user_options = apply_profile
c.KubeSpawner.profile_list = PROFILES  # read only when the Helm values switch the spawner to KubeSpawner
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
# the server's children (kernels, `imagelib viewer` behind jupyter-server-proxy) run from this environment
c.Spawner.environment = {"PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "/usr/bin:/bin")])}
c.Spawner.default_url = "/lab"
if os.geteuid() == 0:  # containers and CI run as root; jupyter_server refuses that unless told
    c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 180  # a cold JupyterLab on a loaded machine
c.Spawner.http_timeout = 180
c.Spawner.env_keep = [
    *("PATH", "PYTHONPATH", "LANG", "LC_ALL", "VIRTUAL_ENV"),
    # the library's settings and the issuer; not the hub's own secrets, nor a frozen token
    *(
        k
        for k in os.environ
        if k.startswith("IMAGELIB_") and not k.startswith(("IMAGELIB_HUB_", "IMAGELIB_TOKEN"))
    ),
]
