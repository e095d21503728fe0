"""Authentication and RBAC: bearer JWTs of an OIDC issuer (Keycloak or ``imagelib dev-idp``) → principals.

A service-layer package: the HTTP API, the hub and the workers call it; it imports no imagelib face.
"""

from imagelib.auth.jwks import IssuerKeys
from imagelib.auth.kernel import current_token, forget_token, in_hub
from imagelib.auth.loopback import is_loopback
from imagelib.auth.principal import ALL, LOCAL_USER, OPERATIONS, ROLE_RE, Principal, require, role
from imagelib.auth.verify import ALGORITHMS, TokenVerifier, bearer_token

__all__ = [
    "ALGORITHMS",
    "ALL",
    "LOCAL_USER",
    "OPERATIONS",
    "ROLE_RE",
    "IssuerKeys",
    "Principal",
    "TokenVerifier",
    "bearer_token",
    "current_token",
    "forget_token",
    "in_hub",
    "is_loopback",
    "require",
    "role",
]
