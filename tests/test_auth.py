"""Bearer-token verification and RBAC (issue 9, item 6) against the dev IdP served over real HTTP.

Tokens come from the IdP's endpoints; forged ones are built here with joserfc (or by hand where joserfc
itself refuses to build them: ``alg: none`` and HS256 keyed with the RSA public key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import free_port
from joserfc import jwt
from joserfc.jwk import RSAKey
from test_idp import DEFAULT_REALM, claims_of, password_token
from test_idp import idp as idp  # the module-scoped dev IdP fixture

from imagelib.auth import LOCAL_USER, Principal, TokenVerifier, bearer_token, require
from imagelib.errors import AuthError, Unavailable, spec_for
from imagelib.idp import DevIdP, running


@pytest.fixture
def fresh_idp() -> Iterator[DevIdP]:
    """A dev IdP of its own, for tests that rotate its keys."""
    with running(DEFAULT_REALM) as server:
        yield server


def b64(data: bytes | dict[str, Any]) -> str:
    """base64url without padding (of JSON for a dict)."""
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(idp: DevIdP, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the IdP's real active key (what a stolen key could do; here: edge claims)."""
    key = idp.keys.active
    return jwt.encode({"alg": "RS256", "kid": key.kid, **header}, claims, key)


def alice_claims(idp: DevIdP, **changes: Any) -> dict[str, Any]:
    """The claims of a real access token of alice, with changes (``None`` removes a claim)."""
    claims = claims_of(password_token(idp, "alice")["access_token"])
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


# -- principals and RBAC ------------------------------------------------------------------------------------


def test_roles_and_admin_implication() -> None:
    p = Principal(
        "s", "u", roles=frozenset({"imagelib:landsat:read", "imagelib:sar:admin", "offline_access"})
    )
    assert p.can("landsat", "read") and not p.can("landsat", "write") and not p.can("landsat", "tile")
    assert all(p.can("sar", op) for op in ("read", "write", "tile", "stats", "admin"))
    assert not p.can("other", "read")
    assert p.readable_namespaces() == {"landsat", "sar"}
    star = Principal("s", "u", roles=frozenset({"imagelib:*:tile"}))
    assert (
        star.can("anything", "tile")
        and not star.can("anything", "read")
        and star.readable_namespaces() == set()
    )
    assert Principal("s", "u", roles=frozenset({"imagelib:*:read"})).readable_namespaces() is None
    assert LOCAL_USER.readable_namespaces() is None and LOCAL_USER.can("x", "admin")
    with pytest.raises(ValueError, match="unknown operation"):
        p.can("landsat", "delete")


def test_roles_from_groups_and_client_roles() -> None:
    claims = {
        "sub": "1",
        "preferred_username": "dora",
        "groups": ["/imagelib:microscopy:read", "/team/imagelib:sar:tile", "plain-group"],
        "resource_access": {"imagelib": {"roles": ["imagelib:landsat:stats"]}, "other": {"roles": ["x"]}},
    }
    p = Principal.from_claims(claims)
    assert p.can("microscopy", "read") and p.can("sar", "tile") and p.can("landsat", "stats")
    assert "plain-group" not in p.roles and "x" not in p.roles


def test_require_raises_forbidden() -> None:
    p = Principal("s", "alice", roles=frozenset({"imagelib:landsat:read"}))
    require(p, "landsat", "read")
    with pytest.raises(AuthError) as err:
        require(p, "landsat", "write")
    assert err.value.code == "FORBIDDEN" and spec_for(err.value.code).http == 403
    assert err.value.expected == "imagelib:landsat:write"


@pytest.mark.parametrize(
    ("user", "allowed", "refused"),
    [
        ("alice", [("landsat", "read"), ("landsat", "write"), ("landsat", "tile")],
         [("landsat", "stats"), ("landsat", "admin"), ("microscopy", "read")]),
        ("bob", [("landsat", "read"), ("microscopy", "read")], [("landsat", "write"), ("landsat", "tile")]),
        ("carol", [("microscopy", "read"), ("microscopy", "tile")],
         [("landsat", "read"), ("microscopy", "write")]),
        ("admin", [("landsat", "write"), ("any", "stats"), ("any", "admin")], []),
    ],
)  # fmt: skip
def test_realm_users_rbac(idp: DevIdP, user: str, allowed: list, refused: list) -> None:
    principal = TokenVerifier(idp.issuer).verify(password_token(idp, user)["access_token"])
    assert principal.username == user and principal.email == f"{user}@example.org"
    for namespace, operation in allowed:
        require(principal, namespace, operation)
    for namespace, operation in refused:
        with pytest.raises(AuthError) as err:
            require(principal, namespace, operation)
        assert err.value.code == "FORBIDDEN"
    readable = principal.readable_namespaces()
    assert readable == {"alice": {"landsat"}, "bob": None, "carol": {"microscopy"}, "admin": None}[user]


# -- the 401 matrix ----------------------------------------------------------------------------------------


def _alg_none(idp: DevIdP) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(alice_claims(idp))}."


def _key_confusion(idp: DevIdP) -> str:
    # The classic attack: HS256 with the RSA public key (as PEM) as the HMAC secret.
    secret = idp.keys.active.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'kid': idp.keys.active.kid})}.{b64(alice_claims(idp))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def _tampered(idp: DevIdP) -> str:
    header, payload, signature = password_token(idp, "alice")["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["realm_access"]["roles"].append("imagelib:*:admin")
    return f"{header}.{b64(claims)}.{signature}"


def _unknown_kid(idp: DevIdP) -> str:
    attacker = RSAKey.generate_key(2048)
    return jwt.encode({"alg": "RS256", "kid": "attacker-key"}, alice_claims(idp), attacker)


def _foreign_key_known_kid(idp: DevIdP) -> str:
    attacker = RSAKey.generate_key(2048)
    return jwt.encode({"alg": "RS256", "kid": idp.keys.active.kid}, alice_claims(idp), attacker)


CASES: dict[str, tuple[Callable[[DevIdP], str | None], str]] = {
    "no token": (lambda idp: None, "no bearer token"),
    "empty": (lambda idp: "", "no bearer token"),
    "garbage": (lambda idp: "not-a-token", "not a compact JWS"),
    "garbage parts": (lambda idp: "a.b.c", "malformed"),
    "expired": (lambda idp: sign(idp, alice_claims(idp, exp=int(time.time()) - 120)), "expired"),
    "nbf future": (lambda idp: sign(idp, alice_claims(idp, nbf=int(time.time()) + 600)), "not valid yet"),
    "wrong aud": (lambda idp: sign(idp, alice_claims(idp, aud="another-api")), "audience"),
    "no aud": (lambda idp: sign(idp, alice_claims(idp, aud=None)), "'aud'"),
    "wrong iss": (
        lambda idp: sign(idp, alice_claims(idp, iss="http://127.0.0.1:1/realms/imagelib")),
        "issuer",
    ),
    "no exp": (lambda idp: sign(idp, alice_claims(idp, exp=None)), "'exp'"),
    "alg none": (_alg_none, "'none' is not accepted"),
    "HS256 key confusion": (_key_confusion, "'HS256' is not accepted"),
    "tampered payload": (_tampered, "signature does not verify"),
    "unknown kid": (_unknown_kid, "unknown key"),
    "foreign key, known kid": (_foreign_key_known_kid, "signature does not verify"),
    "ID token": (lambda idp: password_token(idp, "alice", scope="openid")["id_token"], "audience"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_401(idp: DevIdP, case: str, caplog: pytest.LogCaptureFixture) -> None:
    build, reason = CASES[case]
    token = build(idp)
    with caplog.at_level(logging.DEBUG, logger="imagelib"), pytest.raises(AuthError) as err:
        TokenVerifier(idp.issuer).verify(token)
    assert err.value.code == "UNAUTHENTICATED" and spec_for(err.value.code).http == 401
    assert reason in err.value.message
    if token:
        assert all(token not in r.getMessage() and token[-20:] not in r.getMessage() for r in caplog.records)


def test_leeway_accepts_small_clock_skew(idp: DevIdP) -> None:
    now = int(time.time())
    skewed = sign(idp, alice_claims(idp, exp=now - 10, nbf=now + 10, iat=now + 10))
    assert TokenVerifier(idp.issuer, leeway=30).verify(skewed).username == "alice"
    with pytest.raises(AuthError, match="expired"):
        TokenVerifier(idp.issuer, leeway=0).verify(skewed)


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer   x ") == "x"
    assert (
        bearer_token("Basic Zm9vOmJhcg==") is None
        and bearer_token(None) is None
        and bearer_token("Bearer") is None
    )


# -- keys: ES256, rotation, refetch rate limit, issuer down -------------------------------------------------


def test_es256_accepted_when_jwks_has_ec_key(fresh_idp: DevIdP) -> None:
    verifier = TokenVerifier(fresh_idp.issuer, refetch_interval=0)
    verifier.verify(password_token(fresh_idp, "bob")["access_token"])
    fresh_idp.keys.rotate("ES256")
    token = password_token(fresh_idp, "bob")["access_token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    assert verifier.verify(token).username == "bob"


def test_jwks_refetched_on_rotation_and_rate_limited(fresh_idp: DevIdP) -> None:
    attacker = RSAKey.generate_key(2048)
    claims = alice_claims(fresh_idp)
    flood = [jwt.encode({"alg": "RS256", "kid": f"made-up-{i}"}, claims, attacker) for i in range(20)]
    verifier = TokenVerifier(fresh_idp.issuer, refetch_interval=2.0)
    old = password_token(fresh_idp, "alice")["access_token"]
    verifier.verify(old)
    assert fresh_idp.hits["certs"] == 1 and fresh_idp.hits["discovery"] == 1
    # a flood of unknown kids right after a fetch: refused without touching the IdP
    for token in flood:
        with pytest.raises(AuthError, match="unknown key"):
            verifier.verify(token)
    assert fresh_idp.hits["certs"] == 1
    fresh_idp.keys.rotate()
    new = password_token(fresh_idp, "alice")["access_token"]
    time.sleep(2.1)
    assert verifier.verify(new).username == "alice"  # unknown kid → one refetch → the rotated key
    assert fresh_idp.hits["certs"] == 2
    assert verifier.verify(old).username == "alice"  # the old key is still published (passive)
    for token in flood:
        with pytest.raises(AuthError, match="unknown key"):
            verifier.verify(token)
    assert fresh_idp.hits["certs"] == 2  # the refetch just happened: the flood waits for the interval
    time.sleep(2.1)
    for token in flood:
        with pytest.raises(AuthError, match="unknown key"):
            verifier.verify(token)
    assert fresh_idp.hits["certs"] == 3  # one more fetch however many bad kids arrive
    assert fresh_idp.hits["discovery"] == 1


def test_unreachable_issuer_is_503_not_401() -> None:
    verifier = TokenVerifier(f"http://127.0.0.1:{free_port()}/realms/imagelib", timeout=2)
    key = RSAKey.generate_key(2048)
    token = jwt.encode({"alg": "RS256", "kid": "k"}, {"sub": "x"}, key)
    with pytest.raises(Unavailable) as err:
        verifier.verify(token)
    assert err.value.code == "IDP_UNAVAILABLE" and spec_for(err.value.code).http == 503
