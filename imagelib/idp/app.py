"""The dev IdP as an ASGI app with Keycloak's URL layout under ``/realms/<realm>/``.

Grants: authorization code (+ PKCE S256, login form, an SSO cookie), password, client credentials and
refresh token. State (sessions, codes, login attempts) lives in memory: a restart logs everyone out, but
with a keys file the tokens already handed out keep verifying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from imagelib.idp.keys import SigningKeys
from imagelib.idp.pages import login_page, message_page
from imagelib.idp.realm import Client, Realm, User
from imagelib.idp.tokens import Minter, Session, TokenError

CODE_LIFETIME = 60  # seconds an authorization code may wait for its exchange (Keycloak: 60)
LOGIN_LIFETIME = 1800  # seconds a login form stays valid
COOKIE = "IMAGELIB_IDP_SESSION"
log = logging.getLogger("imagelib.idp")
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 §4.1 (challenge: same alphabet)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
GRANT_TYPES = ["authorization_code", "password", "client_credentials", "refresh_token"]
_USERINFO = (
    *("sub", "preferred_username", "email", "email_verified"),
    *("name", "given_name", "family_name", "groups"),
)


class OAuthError(Exception):
    """An RFC 6749 error answered as ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def response(self) -> JSONResponse:
        """The JSON error response."""
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=_NO_STORE)


@dataclass
class Grant:
    """A pending login or an issued authorization code: the authorization request it answers."""

    client: Client
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    challenge: str | None
    expires: float
    session: Session | None = None


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _scope(requested: str | None) -> str:
    """Keycloak's granted scope: its default client scopes, plus ``openid`` when asked for."""
    asked = (requested or "").split()
    return " ".join((["openid"] if "openid" in asked else []) + ["profile", "email"])


class DevIdP:
    """One realm served at ``{base_url}/realms/{realm}``; ``.app`` is the ASGI application."""

    def __init__(self, realm: Realm, base_url: str, keys: SigningKeys | None = None) -> None:
        self.realm = realm
        self.issuer = f"{base_url.rstrip('/')}/realms/{realm.name}"
        self.keys = keys or SigningKeys()
        self.minter = Minter(realm, self.keys, self.issuer)
        self.sessions: dict[str, Session] = {}
        self.hits: Counter[str] = Counter()  # requests per endpoint (tests watch JWKS fetches)
        self._logins: dict[str, Grant] = {}
        self._codes: dict[str, Grant] = {}
        prefix = f"/realms/{realm.name}"
        oidc = f"{prefix}/protocol/openid-connect"
        self.app = Starlette(
            routes=[
                Route(f"{prefix}/.well-known/openid-configuration", self.discovery),
                Route(f"{oidc}/certs", self.certs),
                Route(f"{oidc}/auth", self.authorize),
                Route(f"{prefix}/login-actions/authenticate", self.authenticate, methods=["POST"]),
                Route(f"{oidc}/token", self.token, methods=["POST"]),
                Route(f"{oidc}/userinfo", self.userinfo, methods=["GET", "POST"]),
                Route(f"{oidc}/logout", self.logout, methods=["GET", "POST"]),
            ]
        )

    # -- discovery and keys ------------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        """The OpenID Provider metadata (what Keycloak publishes, minus what is not emulated)."""
        self.hits["discovery"] += 1
        oidc = f"{self.issuer}/protocol/openid-connect"
        doc = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{oidc}/auth",
            "token_endpoint": f"{oidc}/token",
            "userinfo_endpoint": f"{oidc}/userinfo",
            "end_session_endpoint": f"{oidc}/logout",
            "jwks_uri": f"{oidc}/certs",
            "grant_types_supported": GRANT_TYPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "roles"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "azp", "sid", "preferred_username",
                "email", "email_verified", "name", "given_name", "family_name", "groups", "realm_access",
            ],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
        }  # fmt: skip
        return JSONResponse(doc, headers={"Access-Control-Allow-Origin": "*"})

    async def certs(self, request: Request) -> Response:
        """The public JWKS (active and passive keys)."""
        self.hits["certs"] += 1
        return JSONResponse(self.keys.jwks(), headers={"Access-Control-Allow-Origin": "*"})

    # -- authorization code flow -------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Start a login: check the client and redirect URI, then show the form (or reuse the SSO session)."""
        self.hits["auth"] += 1
        params = request.query_params
        client = self.realm.clients.get(params.get("client_id", ""))
        if client is None or not client.enabled:
            return _page(400, "Client not found.")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or not client.redirect_allowed(redirect_uri):
            return _page(400, "Invalid parameter: redirect_uri")  # never redirect to an unknown URI
        state = params.get("state")
        try:
            grant = self._grant_request(client, redirect_uri, params)
        except OAuthError as exc:
            return _redirect(redirect_uri, error=exc.error, error_description=exc.description, state=state)
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is not None and params.get("prompt") != "login" and self._session_alive(session):
            return self._issue_code(grant, session)
        login = secrets.token_urlsafe(24)
        self._prune()
        self._logins[login] = grant
        return HTMLResponse(login_page(self.realm.name, self._form_action(login)), headers=_NO_STORE)

    def _grant_request(self, client: Client, redirect_uri: str, params: Any) -> Grant:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "Only the authorization code flow is supported")
        if not client.standard_flow:
            raise OAuthError("unauthorized_client", "Client is not allowed to initiate browser login")
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge is None and (client.public or client.pkce_method):
            raise OAuthError("invalid_request", "Missing parameter: code_challenge")
        if challenge is not None and method != "S256":
            raise OAuthError("invalid_request", "Invalid parameter: code_challenge_method (only S256)")
        if challenge is not None and not _VERIFIER_RE.match(challenge):
            raise OAuthError("invalid_request", "Invalid parameter: code_challenge")
        return Grant(
            client=client,
            redirect_uri=redirect_uri,
            scope=_scope(params.get("scope")),
            state=params.get("state"),
            nonce=params.get("nonce"),
            challenge=challenge,
            expires=time.time() + LOGIN_LIFETIME,
        )

    def _form_action(self, login: str) -> str:
        return f"{self.issuer}/login-actions/authenticate?{urlencode({'login': login})}"

    async def authenticate(self, request: Request) -> Response:
        """The login form's POST: check the password, then redirect back with a code."""
        self.hits["authenticate"] += 1
        login = request.query_params.get("login", "")
        grant = self._logins.get(login)
        if grant is None or grant.expires < time.time():
            return _page(400, "Your login attempt timed out. Login will start from the beginning.")
        form = await request.form()
        username = str(form.get("username", ""))
        user = self.realm.authenticate(username, str(form.get("password", "")))
        if user is None:
            log.warning("login failed for %r: invalid username or password", username[:64])
            error = "Invalid username or password."
            page = login_page(self.realm.name, self._form_action(login), username, error)
            return HTMLResponse(page, status_code=200, headers=_NO_STORE)
        del self._logins[login]
        session = self._new_session(user)
        response = self._issue_code(grant, session)
        response.set_cookie(
            COOKIE, session.id, path=f"/realms/{self.realm.name}/", httponly=True, samesite="lax"
        )
        return response

    def _issue_code(self, grant: Grant, session: Session) -> Response:
        code = secrets.token_urlsafe(32)
        grant.session = session
        grant.expires = time.time() + CODE_LIFETIME
        self._codes[code] = grant
        return _redirect(
            grant.redirect_uri, code=code, state=grant.state, session_state=session.id, iss=self.issuer
        )

    # -- token endpoint ----------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        """The token endpoint: authorization_code, password, client_credentials, refresh_token."""
        self.hits["token"] += 1
        form = await request.form()
        try:
            client = self._client(request, form)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                body = self._code_grant(client, form)
            elif grant_type == "password":
                body = self._password_grant(client, form)
            elif grant_type == "client_credentials":
                body = self._client_credentials_grant(client)
            elif grant_type == "refresh_token":
                body = self._refresh_grant(client, form)
            else:
                raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")
        except OAuthError as exc:
            # the reason only: never the code, a token or a secret
            grant = str(form.get("grant_type"))[:40]
            log.warning("token request (%s) refused: %s: %s", grant, exc.error, exc.description)
            return exc.response()
        return JSONResponse(body, headers=_NO_STORE)

    def _client(self, request: Request, form: FormData) -> Client:
        """Client authentication: HTTP Basic (RFC 6749 §2.3.1) or ``client_id``/``client_secret`` fields."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
            except ValueError:
                raise OAuthError("invalid_client", "Malformed Basic authorization header", 401) from None
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        client = self.realm.clients.get(str(client_id or ""))
        if client is None or not client.enabled:
            raise OAuthError("invalid_client", "Invalid client or Invalid client credentials", 401)
        if not client.public:
            expected = (client.secret or "").encode()
            if not secret or not client.secret or not hmac.compare_digest(expected, str(secret).encode()):
                raise OAuthError("unauthorized_client", "Invalid client or Invalid client credentials", 401)
        return client

    def _code_grant(self, client: Client, form: FormData) -> dict[str, Any]:
        grant = self._codes.pop(str(form.get("code", "")), None)  # single use, even when refused below
        if grant is None or grant.expires < time.time() or grant.session is None:
            raise OAuthError("invalid_grant", "Code not valid")
        if grant.client.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Auth error: code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "Incorrect redirect_uri")
        if grant.challenge is not None:
            verifier = str(form.get("code_verifier", ""))
            if not verifier:
                raise OAuthError("invalid_grant", "PKCE code verifier not specified")
            if not _VERIFIER_RE.match(verifier) or not hmac.compare_digest(s256(verifier), grant.challenge):
                raise OAuthError("invalid_grant", "PKCE verification failed: Code mismatch")
        if not self._session_alive(grant.session):
            raise OAuthError("invalid_grant", "Session not active")
        return self._tokens(client, grant.session.user, grant.session, grant.scope, grant.nonce)

    def _password_grant(self, client: Client, form: FormData) -> dict[str, Any]:
        if not client.direct_access_grants:
            raise OAuthError("unauthorized_client", "Client not allowed for direct access grants")
        user = self.realm.authenticate(str(form.get("username", "")), str(form.get("password", "")))
        if user is None:
            raise OAuthError("invalid_grant", "Invalid user credentials", 401)
        return self._tokens(client, user, self._new_session(user), _scope(form.get("scope")), None)

    def _client_credentials_grant(self, client: Client) -> dict[str, Any]:
        if client.public or not client.service_accounts:
            raise OAuthError("unauthorized_client", "Client not enabled to retrieve service account")
        user = self.realm.service_account(client)
        token = self.minter.access_token(client, user, None, _scope(None))
        # Keycloak hands out no refresh token for client credentials: the client simply asks again.
        lifetime = self.realm.access_token_lifespan
        return {
            "access_token": token,
            "expires_in": lifetime,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": _scope(None),
        }

    def _refresh_grant(self, client: Client, form: FormData) -> dict[str, Any]:
        try:
            claims = self.minter.decode(str(form.get("refresh_token", "")), "Refresh")
        except TokenError as exc:
            raise OAuthError("invalid_grant", f"Invalid refresh token ({exc})") from None
        if claims.get("azp") != client.client_id:
            raise OAuthError("invalid_grant", "Invalid refresh token: issued to another client")
        session = self.sessions.get(str(claims.get("sid")))
        if session is None or not self._session_alive(session):
            raise OAuthError("invalid_grant", "Session not active")
        session.last_refresh = time.time()
        return self._tokens(client, session.user, session, str(claims.get("scope", _scope(None))), None)

    def _tokens(
        self, client: Client, user: User, session: Session, scope: str, nonce: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.minter.access_token(client, user, session, scope),
            "expires_in": self.realm.access_token_lifespan,
            "refresh_expires_in": self.minter.refresh_expiry(session),
            "refresh_token": self.minter.refresh_token(client, user, session, scope),
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": session.id,
            "scope": scope,
        }
        if "openid" in scope.split():
            body["id_token"] = self.minter.id_token(client, user, session, nonce)
        return body

    # -- userinfo and logout -----------------------------------------------------------------------------

    async def userinfo(self, request: Request) -> Response:
        """The user's claims for a valid access token of a live session."""
        self.hits["userinfo"] += 1
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        try:
            claims = self.minter.decode(token, "Bearer")
        except TokenError as exc:
            return JSONResponse({"error": "invalid_token", "error_description": str(exc)}, 401, challenge)
        sid = claims.get("sid")
        if sid is not None and (sid not in self.sessions or not self._session_alive(self.sessions[sid])):
            body = {"error": "invalid_token", "error_description": "Session not active"}
            return JSONResponse(body, 401, challenge)
        return JSONResponse({k: claims[k] for k in _USERINFO if k in claims}, headers=_NO_STORE)

    async def logout(self, request: Request) -> Response:
        """RP-initiated logout (browser, ``id_token_hint``) or a client's ``refresh_token`` POST."""
        self.hits["logout"] += 1
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
            if "refresh_token" in params:
                try:
                    client = self._client(request, form)
                    claims = self.minter.decode(params["refresh_token"], "Refresh")
                except OAuthError as exc:
                    return exc.response()
                except TokenError as exc:
                    return OAuthError("invalid_grant", str(exc)).response()
                if claims.get("azp") != client.client_id:
                    return OAuthError("invalid_grant", "Token was issued to another client").response()
                self.sessions.pop(str(claims.get("sid")), None)
                return Response(status_code=204)
        client_id, sid = params.get("client_id"), request.cookies.get(COOKIE)
        if params.get("id_token_hint"):
            try:
                hint = self.minter.decode(params["id_token_hint"], "ID")
            except TokenError as exc:
                return _page(400, f"Invalid parameter: id_token_hint ({exc})")
            client_id, sid = hint.get("azp", client_id), hint.get("sid", sid)
        self.sessions.pop(str(sid), None)
        target = params.get("post_logout_redirect_uri")
        client = self.realm.clients.get(str(client_id or ""))
        if target and client is not None and client.post_logout_allowed(target):
            response: Response = _redirect(target, state=params.get("state"))
        elif target:
            response = _page(400, "Invalid redirect uri")
        else:
            response = HTMLResponse(message_page("Logged out", "You are logged out."))
        response.delete_cookie(COOKIE, path=f"/realms/{self.realm.name}/")
        return response

    # -- sessions ----------------------------------------------------------------------------------------

    def _new_session(self, user: User) -> Session:
        session = Session(secrets.token_urlsafe(18), user)
        self.sessions[session.id] = session
        return session

    def _session_alive(self, session: Session) -> bool:
        alive = self.minter.refresh_expiry(session) > 0 and session.user.enabled
        if not alive:
            self.sessions.pop(session.id, None)
        return alive

    def _prune(self) -> None:
        now = time.time()
        for store in (self._logins, self._codes):
            for key in [k for k, g in store.items() if g.expires < now]:
                del store[key]
        for session in list(self.sessions.values()):
            self._session_alive(session)  # drops sessions past their idle or max lifetime


def _redirect(uri: str, **params: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{query}", status_code=302, headers=_NO_STORE)


def _page(status: int, message: str) -> HTMLResponse:
    return HTMLResponse(message_page("Error", message), status_code=status, headers=_NO_STORE)
