"""A Keycloak-compatible OpenID Connect provider for development and tests (``imagelib dev-idp``).

It reads a Keycloak realm export (users, clients, groups, roles, token lifetimes) and serves Keycloak's URL
layout, grants and claims, so clients configured for it work unchanged against a real Keycloak that
imported the same file. It has known passwords: it serves loopback only unless told otherwise.
"""

from imagelib.idp.app import DevIdP, s256
from imagelib.idp.keys import SigningKeys
from imagelib.idp.realm import Client, Realm, User
from imagelib.idp.server import DEFAULT_REALM, is_loopback, load_realm, running, serve

__all__ = [
    "DEFAULT_REALM",
    "Client",
    "DevIdP",
    "Realm",
    "SigningKeys",
    "User",
    "is_loopback",
    "load_realm",
    "running",
    "s256",
    "serve",
]
