"""The dev IdP's signing keys: generated at start (RS256), optionally kept in a file, rotatable.

The first key signs; rotated-out keys stay in the published JWKS (like Keycloak's passive keys) so tokens
signed before a rotation keep verifying until they expire.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, RSAKey, import_key

SigningKey = RSAKey | ECKey


def generate(alg: str = "RS256") -> SigningKey:
    """A fresh private key for ``alg`` (RS256: RSA 2048, ES256: EC P-256), its kid the JWK thumbprint."""
    params: dict[str, Any] = {"use": "sig", "alg": alg}
    key: SigningKey
    if alg == "RS256":
        key = RSAKey.generate_key(2048, parameters=params, auto_kid=True)  # type: ignore[arg-type]
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params, auto_kid=True)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r} (RS256 or ES256)")
    return key


class SigningKeys:
    """The realm's keys; ``path`` (a private JWKS file, mode 0600) keeps them across restarts."""

    def __init__(self, path: str | Path | None = None, alg: str = "RS256") -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        if self.path and self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._keys = [import_key(k) for k in data["keys"]]  # type: ignore[misc]
        if not self._keys:
            self._keys = [generate(alg)]
            self._save()

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens."""
        with self._lock:
            return self._keys[0]

    def get(self, kid: str | None) -> SigningKey | None:
        """A key of this realm by kid (the IdP verifies its own tokens with it)."""
        with self._lock:
            return next((k for k in self._keys if k.kid == kid), None)

    def rotate(self, alg: str = "RS256", keep_old: bool = True) -> SigningKey:
        """Make a new key the signing key; old ones stay published unless ``keep_old`` is False."""
        key = generate(alg)
        with self._lock:
            self._keys = [key, *self._keys] if keep_old else [key]
        self._save()
        return key

    def jwks(self) -> dict[str, Any]:
        """The public JWKS served at ``/protocol/openid-connect/certs``."""
        with self._lock:
            return {"keys": [k.as_dict(private=False) for k in self._keys]}

    def _save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = {"keys": [k.as_dict(private=True) for k in self._keys]}
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private keys: owner only
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(tmp, self.path)
