"""The issuer's discovery document and signing keys, fetched over HTTP and cached.

Keys are refetched when a token names an unknown ``kid`` (the issuer rotated its keys) but never more than
once per ``refetch_interval`` seconds, so a flood of tokens with made-up ``kid`` values cannot turn the
server into a JWKS hammer. Without unknown kids the set is refreshed after ``ttl`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey, import_key

from imagelib.errors import AuthError, Unavailable

log = logging.getLogger("imagelib.auth")

#: JWK key types usable for the accepted algorithms (RS256 → RSA, ES256 → EC P-256).
KEY_TYPES: dict[str, type[RSAKey] | type[ECKey]] = {"RS256": RSAKey, "ES256": ECKey}


class IssuerKeys:
    """Discovery + JWKS of one issuer, cached; thread-safe."""

    def __init__(
        self,
        issuer: str,
        *,
        refetch_interval: float = 5.0,
        ttl: float = 3600.0,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.refetch_interval = refetch_interval
        self.ttl = ttl
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._lock = threading.Lock()
        self._discovery: dict[str, Any] | None = None
        self._keys: dict[str, RSAKey | ECKey] = {}
        self._fetched_at = float("-inf")
        self.fetches = 0  # JWKS downloads so far (observability, tests)

    def discovery(self) -> dict[str, Any]:
        """The issuer's OpenID configuration (fetched once; its ``issuer`` must equal ours)."""
        if self._discovery is None:
            doc = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if doc.get("issuer", "").rstrip("/") != self.issuer:
                raise Unavailable(
                    f"discovery document names issuer {doc.get('issuer')!r}, expected {self.issuer!r}",
                    code="IDP_UNAVAILABLE",
                )
            if not isinstance(doc.get("jwks_uri"), str):
                raise Unavailable("discovery document has no jwks_uri", code="IDP_UNAVAILABLE")
            self._discovery = doc
        return self._discovery

    def key(self, kid: str | None, alg: str) -> RSAKey | ECKey:
        """The verification key for a token header (``kid``, ``alg``), refetching the JWKS when allowed."""
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at > self.ttl
            if stale or (self._find(kid, alg) is None and now - self._fetched_at >= self.refetch_interval):
                self._refresh(now, keep_on_error=bool(self._keys))
            found = self._find(kid, alg)
        if found is None:
            raise AuthError(
                f"token signed with an unknown key (kid {kid!r}, alg {alg}): not in the issuer's JWKS",
                code="UNAUTHENTICATED",
            )
        return found

    def _find(self, kid: str | None, alg: str) -> RSAKey | ECKey | None:
        kind = KEY_TYPES[alg]
        if kid is not None:
            key = self._keys.get(kid)
            return key if isinstance(key, kind) else None
        # No kid in the header: only unambiguous when the issuer has exactly one key of that type.
        matching = [k for k in self._keys.values() if isinstance(k, kind)]
        return matching[0] if len(matching) == 1 else None

    def _refresh(self, now: float, keep_on_error: bool) -> None:
        self._fetched_at = now  # also on failure: the rate limit holds while the issuer is down
        try:
            jwks = self._get_json(self.discovery()["jwks_uri"])
        except Unavailable:
            if keep_on_error:
                log.warning("JWKS refetch from %s failed; keeping the cached keys", self.issuer)
                return
            raise
        self.fetches += 1
        keys: dict[str, RSAKey | ECKey] = {}
        for data in jwks.get("keys", []):
            # Keycloak also publishes encryption keys (use=enc); they never sign tokens.
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            if data.get("kty") not in ("RSA", "EC"):
                continue
            try:
                key = import_key(data)
            except (JoseError, ValueError) as exc:
                log.warning("skipping unusable JWK %s from %s: %s", data.get("kid"), self.issuer, exc)
                continue
            if isinstance(key, RSAKey | ECKey):
                keys[str(data.get("kid") or key.thumbprint())] = key
        self._keys = keys
        log.info("fetched JWKS of %s: %d signing keys", self.issuer, len(keys))

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self._client.get(url)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"cannot fetch {url}: {exc}", code="IDP_UNAVAILABLE") from exc
        if not isinstance(data, dict):
            raise Unavailable(f"{url} did not return a JSON object", code="IDP_UNAVAILABLE")
        return data
