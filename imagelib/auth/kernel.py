"""The user's current access token, wherever imagelib runs: explicit, from the hub, or from the environment.

Inside a JupyterHub single-user server (and its kernels) the hub keeps the user's Keycloak tokens in the
encrypted ``auth_state`` and refreshes them before they expire (``hub/jupyterhub_config.py``). A token
frozen into the environment at spawn would be dead within minutes, so :func:`current_token` asks the hub
(``GET $JUPYTERHUB_API_URL/users/$JUPYTERHUB_USER`` with the server's own ``$JUPYTERHUB_API_TOKEN``,
whose only extra scope is ``admin:auth_state!user``; the hub's ``/user`` "whoami" answer never fills in
``auth_state``, ``/users/<name>`` does) and caches the answer until shortly before its ``exp``.
Outside a hub it returns ``$IMAGELIB_TOKEN`` when set, else None (the API then serves only loopback
callers without an issuer). Tokens are never logged.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from imagelib.errors import AuthError, Unavailable

log = logging.getLogger("imagelib.auth")

#: a cached token is dropped this many seconds before its ``exp`` (clock skew, request time)
EXPIRY_MARGIN = 10.0
#: the variable read outside a hub (a token obtained some other way, e.g. ``imagelib login``)
TOKEN_ENV = "IMAGELIB_TOKEN"


@dataclass(frozen=True)
class _Cached:
    token: str
    exp: float
    key: tuple[str, str]  # (hub API URL, server token) it was fetched with


_lock = threading.Lock()
_cache: _Cached | None = None


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, NOT verified (only to read ``exp`` and roles of a token from a trusted hop)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (only to schedule the next fetch)."""
    exp = unverified_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) else None


def in_hub(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs under a JupyterHub single-user server (both hub variables set)."""
    env = os.environ if env is None else env
    return bool(env.get("JUPYTERHUB_API_URL") and env.get("JUPYTERHUB_API_TOKEN"))


def current_token(explicit: str | None = None, *, env: Mapping[str, str] | None = None) -> str | None:
    """The access token for the API: ``explicit``, else the hub's current one, else ``$IMAGELIB_TOKEN``.

    Under a hub, ``AuthError(code="UNAUTHENTICATED")`` when the hub refuses the server token or holds no
    live token for the user (logged out, refresh failed: log in again);
    ``Unavailable(code="HUB_UNAVAILABLE")`` when the hub cannot be reached."""
    if explicit:
        return explicit
    env = os.environ if env is None else env
    if in_hub(env):
        return _hub_token(env["JUPYTERHUB_API_URL"], env["JUPYTERHUB_API_TOKEN"], env.get("JUPYTERHUB_USER"))
    return env.get(TOKEN_ENV) or None


def forget_token() -> None:
    """Drop the cached hub token (after the API answered 401 to it, say), so the next call asks again."""
    global _cache
    with _lock:
        _cache = None


def _hub_token(api_url: str, server_token: str, user: str | None) -> str:
    global _cache
    key = (api_url, server_token)
    with _lock:  # one fetch at a time: many threads of a kernel asking at once get one hub request
        now = time.time()
        if _cache is not None and _cache.key == key and _cache.exp - EXPIRY_MARGIN > now:
            return _cache.token
        token = _fetch(api_url, server_token, user)
        exp = token_expiry(token)
        if exp is None or exp <= now:
            raise AuthError(
                "the hub holds no live access token for this user (expired and not refreshed): log in again",
                code="UNAUTHENTICATED",
            )
        _cache = _Cached(token, exp, key)
        return token


def _fetch(api_url: str, server_token: str, user: str | None) -> str:
    api, headers = api_url.rstrip("/"), {"Authorization": f"token {server_token}"}
    try:
        if not user:  # a server always has JUPYTERHUB_USER; ask whoami only when something dropped it
            user = _get(f"{api}/user", headers).json().get("name", "")
        url = f"{api}/users/{quote(str(user), safe='')}"
        response = _get(url, headers)
    except ValueError:
        raise Unavailable(f"the hub's answer at {api} is not JSON", code="HUB_UNAVAILABLE") from None
    return _token_of(response, url)


def _get(url: str, headers: dict[str, str]) -> httpx.Response:
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        reason = f"cannot reach the hub at {url}: {type(exc).__name__}"
        raise Unavailable(reason, code="HUB_UNAVAILABLE") from None
    if response.status_code in (401, 403):
        raise AuthError(
            f"the hub refused this server's token ({response.status_code}): the server was stopped or its "
            "token revoked; restart it from the hub",
            code="UNAUTHENTICATED",
        )
    if response.status_code != 200:
        raise Unavailable(f"the hub answered {response.status_code} at {url}", code="HUB_UNAVAILABLE")
    return response


def _token_of(response: httpx.Response, url: str) -> str:
    try:
        model = response.json()
    except ValueError:
        raise Unavailable(f"the hub's answer at {url} is not JSON", code="HUB_UNAVAILABLE") from None
    if "auth_state" not in model:
        # the hub only includes auth_state for tokens holding admin:auth_state!user
        raise AuthError(
            "the server token may not read the user's auth_state: the hub must grant "
            "admin:auth_state!user (c.Spawner.server_token_scopes)",
            code="FORBIDDEN",
        )
    state = model.get("auth_state") or {}
    token = state.get("access_token") if isinstance(state, dict) else None
    if not isinstance(token, str) or not token:
        reason = "the hub holds no access token for this user (logged out): log in again"
        raise AuthError(reason, code="UNAUTHENTICATED")
    log.debug("fetched the current access token of %s from the hub", model.get("name"))
    return token
