"""Who is calling and what they may do: roles ``imagelib:<namespace>:<operation>`` → RBAC decisions.

Decisions (README "Auth"):

- operations are ``read``, ``write``, ``tile``, ``stats`` and ``admin``; namespace ``*`` covers them all;
- ``admin`` on a namespace implies every other operation there (``imagelib:*:admin`` is a superuser);
- the other operations are independent: ``write`` does not imply ``read``, ``read`` does not imply ``tile``;
- roles come from ``realm_access.roles``, from ``resource_access.<audience>.roles`` (Keycloak client roles)
  and from ``groups`` entries named like a role (a group path's last segment, so ``/imagelib:landsat:read``
  counts); Keycloak also copies a group's role mappings into ``realm_access.roles``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagelib.errors import AuthError

OPERATIONS: tuple[str, ...] = ("read", "write", "tile", "stats", "admin")
ALL = "*"
ROLE_RE = re.compile(r"^imagelib:(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,127}):(read|write|tile|stats|admin)$")


def role(namespace: str, operation: str) -> str:
    """The role name that grants ``operation`` on ``namespace``."""
    return f"imagelib:{namespace}:{operation}"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: identity, roles and the verified token claims."""

    subject: str
    username: str
    email: str | None = None
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def grants(self) -> frozenset[tuple[str, str]]:
        """The (namespace, operation) pairs the imagelib roles grant; other roles are ignored."""
        matches = (ROLE_RE.match(r) for r in self.roles)
        return frozenset((m[1], m[2]) for m in matches if m)

    def can(self, namespace: str, operation: str) -> bool:
        """Whether the roles allow ``operation`` on ``namespace`` (also granted by ``admin`` or by ``*``)."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of {', '.join(OPERATIONS)}")
        grants = self.grants
        return any((ns, op) in grants for ns in (namespace, ALL) for op in (operation, "admin"))

    def readable_namespaces(self) -> set[str] | None:
        """Namespaces this caller may read; ``None`` means all of them."""
        grants = self.grants
        if (ALL, "read") in grants or (ALL, "admin") in grants:
            return None
        return {ns for ns, op in grants if op in ("read", "admin")}

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], audience: str = "imagelib") -> Principal:
        """A principal from verified Keycloak-style access-token claims."""
        roles = set(_strings(claims.get("realm_access", {}).get("roles")))
        client = claims.get("resource_access", {}).get(audience, {})
        roles.update(_strings(client.get("roles") if isinstance(client, Mapping) else None))
        for group in _strings(claims.get("groups")):
            name = group.rstrip("/").rsplit("/", 1)[-1]
            if ROLE_RE.match(name):
                roles.add(name)
        subject = str(claims.get("sub") or "")
        username = str(claims.get("preferred_username") or claims.get("client_id") or subject)
        return cls(subject, username, claims.get("email"), frozenset(roles), dict(claims))


def _strings(value: Any) -> Iterable[str]:
    """The string items of a claim that should be a list (anything else yields nothing)."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


#: The single local user of a server with no issuer configured (it binds loopback only): every role.
LOCAL_USER = Principal(
    subject="local",
    username="local",
    roles=frozenset(role(ALL, op) for op in OPERATIONS),
)


def require(principal: Principal, namespace: str, operation: str) -> None:
    """Raise ``AuthError(code="FORBIDDEN")`` unless ``principal`` may do ``operation`` on ``namespace``."""
    if not principal.can(namespace, operation):
        raise AuthError(
            f"{principal.username!r} may not {operation} in namespace {namespace!r}",
            code="FORBIDDEN",
            field="namespace",
            expected=role(namespace, operation),
            found=sorted(r for r in principal.roles if ROLE_RE.match(r)),
        )
