"""A Keycloak realm export (``realm-export.json``) read into users, clients, groups and roles.

Only what the dev IdP needs is read; unknown keys are ignored so the same file imports into a real
Keycloak. Passwords come from ``credentials`` entries: ``{"type": "password", "value": ...}`` (what a
hand-written import file uses) or Keycloak's own pbkdf2 hashes (``secretData``/``credentialData``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class Credential:
    """A password: plain (``value``) or a pbkdf2 hash as Keycloak exports it."""

    value: str | None = None
    hash: bytes | None = None
    salt: bytes = b""
    iterations: int = 0
    algorithm: str = "pbkdf2-sha256"

    def matches(self, password: str) -> bool:
        """Constant-time check of ``password`` against this credential."""
        if self.value is not None:
            return hmac.compare_digest(self.value.encode(), password.encode())
        if self.hash is None or not self.algorithm.startswith("pbkdf2"):
            return False
        digest = {"pbkdf2": "sha1", "pbkdf2-sha256": "sha256", "pbkdf2-sha512": "sha512"}[self.algorithm]
        got = hashlib.pbkdf2_hmac(digest, password.encode(), self.salt, self.iterations, len(self.hash))
        return hmac.compare_digest(got, self.hash)


@dataclass
class User:
    """A realm user (``serviceAccountClientId`` set for a client's service account)."""

    id: str
    username: str
    enabled: bool = True
    email: str | None = None
    email_verified: bool = False
    first_name: str | None = None
    last_name: str | None = None
    credentials: list[Credential] = field(default_factory=list)
    realm_roles: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    service_account_client: str | None = None

    @property
    def name(self) -> str | None:
        """``given family`` as Keycloak's ``name`` claim, or None."""
        parts = [p for p in (self.first_name, self.last_name) if p]
        return " ".join(parts) or None


@dataclass
class Client:
    """An OIDC client: confidential (with ``secret``) or public, and what it may do."""

    client_id: str
    secret: str | None = None
    public: bool = False
    enabled: bool = True
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    standard_flow: bool = True
    direct_access_grants: bool = False
    service_accounts: bool = False
    pkce_method: str | None = None
    protocol_mappers: list[dict[str, Any]] = field(default_factory=list)

    def redirect_allowed(self, uri: str) -> bool:
        """Keycloak's matching: exact or a trailing ``*`` prefix; loopback ports are free (RFC 8252 §7.3)."""
        return _uri_matches(uri, self.redirect_uris)

    def post_logout_allowed(self, uri: str) -> bool:
        """``post.logout.redirect.uris``; ``+`` (Keycloak's default) means the redirect URIs."""
        allowed = [u for u in self.post_logout_redirect_uris if u != "+"]
        if "+" in self.post_logout_redirect_uris:
            allowed += self.redirect_uris
        return _uri_matches(uri, allowed)


@dataclass
class Group:
    """A group (by full path ``/parent/child``) and the realm roles its members get."""

    path: str
    realm_roles: list[str] = field(default_factory=list)


@dataclass
class Realm:
    """Users, clients, groups, roles and token lifetimes of one realm."""

    name: str
    users: dict[str, User]
    clients: dict[str, Client]
    groups: dict[str, Group]
    composites: dict[str, list[str]]
    default_roles: list[str] = field(default_factory=list)
    access_token_lifespan: int = 300
    sso_session_idle_timeout: int = 1800
    sso_session_max_lifespan: int = 36000

    @classmethod
    def load(cls, path: str | Path) -> Realm:
        """Read a Keycloak realm export file."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Realm:
        """Parse a Keycloak realm representation."""
        composites: dict[str, list[str]] = {}
        for role in data.get("roles", {}).get("realm", []):
            composites[role["name"]] = list(role.get("composites", {}).get("realm", []))
        default_role = data.get("defaultRole")
        defaults = [default_role["name"]] if isinstance(default_role, dict) else []
        defaults += list(data.get("defaultRoles", []))  # pre-Keycloak-13 exports
        if isinstance(default_role, dict) and default_role["name"] not in composites:
            composites[default_role["name"]] = list(default_role.get("composites", {}).get("realm", []))
        groups: dict[str, Group] = {}
        _collect_groups(data.get("groups", []), "", groups)
        realm = cls(
            name=data["realm"],
            users={u["username"]: _user(u) for u in data.get("users", [])},
            clients={c["clientId"]: _client(c) for c in data.get("clients", [])},
            groups=groups,
            composites=composites,
            default_roles=defaults,
            access_token_lifespan=int(data.get("accessTokenLifespan", 300)),
            sso_session_idle_timeout=int(data.get("ssoSessionIdleTimeout", 1800)),
            sso_session_max_lifespan=int(data.get("ssoSessionMaxLifespan", 36000)),
        )
        return realm

    def roles_of(self, user: User) -> list[str]:
        """Effective realm roles: direct, default, from groups and their parents, composites expanded."""
        todo = [*user.realm_roles, *self.default_roles]
        for path in user.groups:
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts) + 1):  # subgroups inherit their parents' role mappings
                group = self.groups.get("/" + "/".join(parts[:depth]))
                todo += group.realm_roles if group else []
        seen: list[str] = []
        while todo:
            name = todo.pop(0)
            if name not in seen:
                seen.append(name)
                todo += self.composites.get(name, [])
        return seen

    def authenticate(self, username: str, password: str) -> User | None:
        """The enabled user with this username (or email) and password, or None."""
        user = self.users.get(username) or next(
            (u for u in self.users.values() if u.email and u.email.lower() == username.lower()), None
        )
        if user is None or not user.enabled or user.service_account_client:
            return None
        return user if any(c.matches(password) for c in user.credentials) else None

    def service_account(self, client: Client) -> User:
        """The service-account user of a client (as exported, or a synthetic one without roles)."""
        for user in self.users.values():
            if user.service_account_client == client.client_id:
                return user
        name = f"service-account-{client.client_id}"
        return User(id=_stable_id(self.name, name), username=name, service_account_client=client.client_id)


def _collect_groups(items: Iterable[dict[str, Any]], parent: str, out: dict[str, Group]) -> None:
    for item in items:
        path = item.get("path") or f"{parent}/{item['name']}"
        out[path] = Group(path, list(item.get("realmRoles", [])))
        _collect_groups(item.get("subGroups", []), path, out)


def _user(data: dict[str, Any]) -> User:
    return User(
        id=data.get("id") or _stable_id("user", data["username"]),
        username=data["username"],
        enabled=data.get("enabled", True),
        email=data.get("email"),
        email_verified=data.get("emailVerified", False),
        first_name=data.get("firstName"),
        last_name=data.get("lastName"),
        credentials=[_credential(c) for c in data.get("credentials", []) if c.get("type") == "password"],
        realm_roles=list(data.get("realmRoles", [])),
        groups=[g if g.startswith("/") else "/" + g for g in data.get("groups", [])],
        service_account_client=data.get("serviceAccountClientId"),
    )


def _credential(data: dict[str, Any]) -> Credential:
    if "value" in data:
        return Credential(value=str(data["value"]))
    secret = json.loads(data.get("secretData") or "{}")
    params = json.loads(data.get("credentialData") or "{}")
    return Credential(
        hash=base64.b64decode(secret["value"]) if "value" in secret else None,
        salt=base64.b64decode(secret.get("salt", "")),
        iterations=int(params.get("hashIterations", 0)),
        algorithm=params.get("algorithm", "pbkdf2-sha256"),
    )


def _client(data: dict[str, Any]) -> Client:
    attributes = data.get("attributes", {})
    post_logout = attributes.get("post.logout.redirect.uris", "+")
    return Client(
        client_id=data["clientId"],
        secret=data.get("secret"),
        public=data.get("publicClient", False),
        enabled=data.get("enabled", True),
        redirect_uris=list(data.get("redirectUris", [])),
        post_logout_redirect_uris=[u for u in post_logout.split("##") if u],
        standard_flow=data.get("standardFlowEnabled", True),
        direct_access_grants=data.get("directAccessGrantsEnabled", False),
        service_accounts=data.get("serviceAccountsEnabled", False),
        pkce_method=attributes.get("pkce.code.challenge.method") or None,
        protocol_mappers=list(data.get("protocolMappers", [])),
    )


def _stable_id(*parts: str) -> str:
    """A deterministic UUID, so ``sub`` stays the same across restarts when the file has no ``id``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "imagelib-dev-idp:" + ":".join(parts)))


def _uri_matches(uri: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == uri or (pattern.endswith("*") and uri.startswith(pattern[:-1])):
            return True
        if _loopback_match(uri, pattern):
            return True
    return False


def _loopback_match(uri: str, pattern: str) -> bool:
    """Loopback redirect URIs match on any port (native apps pick a free port, RFC 8252 §7.3)."""
    got, want = urlsplit(uri), urlsplit(pattern)
    if got.hostname not in LOOPBACK_HOSTS or want.hostname != got.hostname or got.scheme != want.scheme:
        return False
    got_rest, want_rest = got.path + ("?" + got.query if got.query else ""), want.path
    if want_rest.endswith("*"):
        return got_rest.startswith(want_rest[:-1])
    return got_rest == want_rest and not want.query
