"""Namespace roles for the extension's tiles when the server runs under JupyterHub with an issuer.

The server's own auth (the hub's OAuth) says *who* may reach the server; which namespaces that user may
see is in their Keycloak roles, exactly as the API decides it. So under a hub each tile request takes the
owner's current access token (:func:`imagelib.auth.current_token`, cached until shortly before ``exp``),
verifies it against the issuer's JWKS and requires ``tile`` on one of the version's namespaces: a user
without the role gets the same coded 403 (``FORBIDDEN``) from the extension as from the API. Without a hub
or without ``IMAGELIB_OIDC_ISSUER`` (plain JupyterLab on a laptop) nothing changes: the server's login is
the only gate, as for a local ``imagelib serve``.
"""

from __future__ import annotations

import os
import threading

from imagelib.auth import TokenVerifier, current_token, in_hub
from imagelib.auth.principal import require
from imagelib.context import Library, current
from imagelib.errors import AuthError

_lock = threading.Lock()
_verifier: TokenVerifier | None = None
#: version → namespaces; versions never change, so this only grows (bounded below)
_namespaces: dict[str, list[str]] = {}


def _hub_verifier() -> TokenVerifier | None:
    """The issuer's verifier when this server runs under a hub with an issuer configured, else None."""
    global _verifier
    issuer = os.environ.get("IMAGELIB_OIDC_ISSUER", "").strip()
    if not issuer or not in_hub():
        return None
    with _lock:
        if _verifier is None or _verifier.issuer != issuer.rstrip("/"):
            _verifier = TokenVerifier(issuer, os.environ.get("IMAGELIB_OIDC_AUDIENCE", "imagelib"))
        return _verifier


def namespaces_of(version: str, lib: Library | None) -> list[str]:
    """The namespaces a version belongs to (NotFound for an unknown version)."""
    hit = _namespaces.get(version)
    if hit is None:
        row = current(lib).catalog.get_version(version)
        hit = sorted({member.split("/", 1)[0] for member in row["datasets"]})
        if len(_namespaces) > 10000:
            _namespaces.clear()
        _namespaces[version] = hit
    return hit


def authorize_tile(version: str, lib: Library | None) -> None:
    """Under a hub: FORBIDDEN unless the user's roles allow ``tile`` on one of the version's namespaces."""
    verifier = _hub_verifier()
    if verifier is None:
        return
    token = current_token()
    if not token:
        raise AuthError("no access token for this user: log in to the hub again", code="UNAUTHENTICATED")
    who = verifier.verify(token)
    namespaces = namespaces_of(version, lib)
    if not any(who.can(ns, "tile") for ns in namespaces):
        require(who, namespaces[0] if namespaces else "*", "tile")
