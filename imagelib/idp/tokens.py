"""Keycloak-shaped tokens: access (``typ: Bearer``), ID (``typ: ID``) and refresh (``typ: Refresh``).

Claims follow what Keycloak puts in with its built-in scopes (``profile``, ``email``, ``roles``) plus the
client's protocol mappers this emulator understands: ``oidc-audience-mapper`` (adds ``aud``) and
``oidc-group-membership-mapper`` (``groups``). Other mappers are ignored.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from imagelib.idp.keys import SigningKeys
from imagelib.idp.realm import Client, Realm, User


@dataclass
class Session:
    """A login (Keycloak's user session): refresh tokens and ``sid`` point at it; logout ends it."""

    id: str
    user: User
    started: float = field(default_factory=time.time)
    last_refresh: float = field(default_factory=time.time)


class TokenError(Exception):
    """A token the IdP itself issued is invalid, expired or of the wrong type."""


def _flag(config: dict[str, Any], key: str, default: bool = True) -> bool:
    return str(config.get(key, str(default))).lower() == "true"


class Minter:
    """Signs and checks the realm's tokens with its active key."""

    def __init__(self, realm: Realm, keys: SigningKeys, issuer: str) -> None:
        self.realm = realm
        self.keys = keys
        self.issuer = issuer

    def _sign(self, claims: dict[str, Any]) -> str:
        key = self.keys.active
        header = {"alg": key.as_dict(private=False)["alg"], "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key)

    def _mapped(self, client: Client, mapper_type: str, token_flag: str) -> list[dict[str, Any]]:
        return [
            m.get("config", {})
            for m in client.protocol_mappers
            if m.get("protocolMapper") == mapper_type and _flag(m.get("config", {}), token_flag)
        ]

    def _profile(self, client: Client, user: User, token_flag: str) -> dict[str, Any]:
        claims: dict[str, Any] = {"preferred_username": user.username}
        if user.service_account_client:
            claims["client_id"] = user.service_account_client
        else:
            claims["email_verified"] = user.email_verified
        for key, value in (
            ("email", user.email),
            ("name", user.name),
            ("given_name", user.first_name),
            ("family_name", user.last_name),
        ):
            if value:
                claims[key] = value
        for config in self._mapped(client, "oidc-group-membership-mapper", token_flag):
            full = _flag(config, "full.path", default=False)
            claims[config.get("claim.name", "groups")] = [
                g if full else g.rstrip("/").rsplit("/", 1)[-1] for g in user.groups
            ]
        return claims

    def _base(self, client: Client, user: User, lifetime: int, typ: str, now: int) -> dict[str, Any]:
        return {
            "exp": now + lifetime,
            "iat": now,
            "nbf": now,
            "jti": secrets.token_urlsafe(16),
            "iss": self.issuer,
            "sub": user.id,
            "typ": typ,
            "azp": client.client_id,
        }

    def access_token(self, client: Client, user: User, session: Session | None, scope: str) -> str:
        """A signed access token with Keycloak's claims and the audience mapper's ``aud``."""
        now = int(time.time())
        claims = self._base(client, user, self.realm.access_token_lifespan, "Bearer", now)
        audiences: list[str] = []
        for config in self._mapped(client, "oidc-audience-mapper", "access.token.claim"):
            for key in ("included.client.audience", "included.custom.audience"):
                if config.get(key) and config[key] not in audiences:
                    audiences.append(config[key])
        if audiences:
            claims["aud"] = audiences[0] if len(audiences) == 1 else audiences
        if session is not None:
            claims["sid"] = claims["session_state"] = session.id
        claims.update(acr="1", scope=scope, realm_access={"roles": self.realm.roles_of(user)})
        claims.update(self._profile(client, user, "access.token.claim"))
        return self._sign(claims)

    def id_token(self, client: Client, user: User, session: Session, nonce: str | None) -> str:
        """An OpenID Connect ID token (``aud`` = the client)."""
        now = int(time.time())
        claims = self._base(client, user, self.realm.access_token_lifespan, "ID", now)
        claims.update(aud=client.client_id, sid=session.id, auth_time=int(session.started), acr="1")
        if nonce:
            claims["nonce"] = nonce
        claims.update(self._profile(client, user, "id.token.claim"))
        return self._sign(claims)

    def refresh_expiry(self, session: Session) -> int:
        """Seconds until the session's refresh token expires (idle timeout, capped by the max lifespan)."""
        idle_end = session.last_refresh + self.realm.sso_session_idle_timeout
        max_end = session.started + self.realm.sso_session_max_lifespan
        return max(0, int(min(idle_end, max_end) - time.time()))

    def refresh_token(self, client: Client, user: User, session: Session, scope: str) -> str:
        """A refresh token bound to the session and client (``aud`` = the issuer, as Keycloak does)."""
        now = int(time.time())
        claims = self._base(client, user, self.refresh_expiry(session), "Refresh", now)
        claims.update(aud=self.issuer, sid=session.id, scope=scope)
        return self._sign(claims)

    def decode(self, token: str, typ: str) -> dict[str, Any]:
        """The claims of a token this realm signed, checking signature, ``exp``, ``iss`` and ``typ``."""
        issuer = {"essential": True, "value": self.issuer}
        registry = jwt.JWTClaimsRegistry(iss=issuer, exp={"essential": True})
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
            key = self.keys.get(header.get("kid"))
            if key is None:
                raise TokenError(f"{typ.lower()} token signed with an unknown key")
            claims = jwt.decode(token, key, algorithms=["RS256", "ES256"]).claims
            registry.validate(claims)
        except (JoseError, ValueError, UnicodeError) as exc:
            raise TokenError(f"invalid {typ.lower()} token: {exc}") from None
        if claims.get("typ") != typ:
            raise TokenError(f"not a {typ.lower()} token")
        return claims
