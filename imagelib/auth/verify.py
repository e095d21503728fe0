"""Bearer-token verification: signature against the issuer's JWKS, then ``exp``/``nbf``/``iss``/``aud``.

Every refusal is ``AuthError(code="UNAUTHENTICATED")`` with a message saying why; an issuer that cannot be
reached at all is ``Unavailable(code="IDP_UNAVAILABLE")`` (503, not a reason for clients to log in again).
Tokens are never logged, only the reason and the header's ``kid``/``alg``.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)

from imagelib.auth.jwks import KEY_TYPES, IssuerKeys
from imagelib.auth.principal import Principal
from imagelib.errors import AuthError

log = logging.getLogger("imagelib.auth")

#: Only asymmetric signatures: HS* would let anyone holding the public key forge tokens (key confusion).
ALGORITHMS: tuple[str, ...] = tuple(KEY_TYPES)
_CLAIM_REASONS = {
    "iss": "token issued by another issuer",
    "aud": "token is not meant for this audience",
    "nbf": "token is not valid yet (nbf in the future)",
    "iat": "token issued in the future",
    "exp": "token has an invalid expiry",
}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; ``None`` when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class TokenVerifier:
    """Verifies access tokens of one OIDC issuer for one audience; thread-safe, keys cached."""

    def __init__(
        self,
        issuer: str,
        audience: str = "imagelib",
        leeway: int = 30,
        *,
        refetch_interval: float = 5.0,
        ttl: float = 3600.0,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.leeway = leeway
        self.keys = IssuerKeys(
            self.issuer, refetch_interval=refetch_interval, ttl=ttl, timeout=timeout, client=client
        )

    def verify(self, token: str | None) -> Principal:
        """The principal of a valid access token; ``AuthError(code="UNAUTHENTICATED")`` otherwise."""
        try:
            return Principal.from_claims(self._claims(token), self.audience)
        except AuthError as exc:
            log.info("token refused: %s", exc.message)
            raise

    def _claims(self, token: str | None) -> dict[str, Any]:
        if not token:
            raise _refuse("no bearer token")
        header = _header(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _refuse(f"token algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})")
        kid = header.get("kid")
        key = self.keys.key(kid if isinstance(kid, str) else None, alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except BadSignatureError:
            raise _refuse("token signature does not verify (tampered, or signed by another key)") from None
        except (JoseError, ValueError) as exc:
            raise _refuse(f"token cannot be decoded: {exc}") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _refuse("token expired") from None
        except MissingClaimError as exc:
            raise _refuse(f"token lacks the {exc.claim!r} claim") from None
        except InvalidClaimError as exc:
            reason = _CLAIM_REASONS.get(exc.claim, f"token has an invalid {exc.claim!r} claim")
            raise _refuse(reason) from None
        # Keycloak marks its tokens: refresh ("Refresh") and ID ("ID") tokens are no bearer credentials.
        if claims.get("typ", "Bearer") != "Bearer":
            raise _refuse(f"token of type {claims['typ']!r} is not an access token")
        return claims


def _header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified (it only selects the key)."""
    if token.count(".") != 2:
        raise _refuse("token is not a compact JWS (three dot-separated parts)")
    try:
        return dict(jws.extract_compact(token.encode("ascii")).protected)
    except (JoseError, ValueError, UnicodeError):
        raise _refuse("token is malformed (header or payload is not base64url JSON)") from None


def _refuse(reason: str) -> AuthError:
    return AuthError(reason, code="UNAUTHENTICATED")
