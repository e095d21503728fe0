"""The dev IdP's HTML pages: login form and messages (ids as in Keycloak's theme, so scripts port)."""

from __future__ import annotations

from html import escape

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f3f4f6; display: grid; place-items: center;
       min-height: 100vh; margin: 0; }}
main {{ background: #fff; padding: 2rem 2.5rem; border-radius: 8px; box-shadow: 0 1px 4px #0002;
        width: 22rem; }}
label, input {{ display: block; width: 100%; box-sizing: border-box; }}
input {{ margin: .25rem 0 1rem; padding: .5rem; font-size: 1rem; }}
#kc-login {{ background: #0b5cad; color: #fff; border: 0; cursor: pointer; }}
.alert {{ color: #a00; margin-bottom: 1rem; }}
small {{ color: #666; }}
</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


def login_page(realm: str, action: str, username: str = "", error: str | None = None) -> str:
    """The username/password form posting to ``action``."""
    alert = f'<p class="alert" id="input-error" role="alert">{escape(error)}</p>' if error else ""
    body = f"""{alert}
<form id="kc-form-login" method="post" action="{escape(action)}">
<label for="username">Username or email</label>
<input id="username" name="username" type="text" value="{escape(username)}" autofocus autocomplete="username">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<input id="kc-login" name="login" type="submit" value="Sign In">
</form>
<small>imagelib dev identity provider (realm {escape(realm)}): for development only.</small>"""
    return _PAGE.format(title=f"Sign in to {escape(realm)}", body=body)


def message_page(title: str, message: str) -> str:
    """A page with one message (errors that must not redirect, logout confirmation)."""
    return _PAGE.format(title=escape(title), body=f'<p id="kc-page-message">{escape(message)}</p>')
