"""Configuration from the environment with embedded defaults (DESIGN.md, "Configuration")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imagelib.errors import UsageError


@dataclass(frozen=True)
class Settings:
    """Resolved settings; read fresh with :func:`settings` so tests and notebooks can change the env."""

    home: Path
    store: str
    catalog: str
    queue: str
    oidc_issuer: str | None
    oidc_audience: str
    max_pixels: int
    max_side: int


def settings() -> Settings:
    """Read ``IMAGELIB_*`` variables, filling the documented defaults."""
    home = Path(os.environ.get("IMAGELIB_HOME", "~/.imagelib")).expanduser().resolve()
    return Settings(
        home=home,
        store=os.environ.get("IMAGELIB_STORE", f"file://{home}/store"),
        catalog=os.environ.get("IMAGELIB_CATALOG", f"sqlite:///{home}/catalog.db"),
        queue=os.environ.get("IMAGELIB_QUEUE", "local"),
        oidc_issuer=os.environ.get("IMAGELIB_OIDC_ISSUER") or None,
        oidc_audience=os.environ.get("IMAGELIB_OIDC_AUDIENCE", "imagelib"),
        # Pixel-bomb guard: 4 Gpx and 2^20 per side by default; rule sets may lower them.
        max_pixels=env_int("IMAGELIB_MAX_PIXELS", 4 * 1024**3),
        max_side=env_int("IMAGELIB_MAX_SIDE", 1 << 20),
    )


def decimal(text: str) -> bool:
    """Only ASCII digits: ``str.isdigit`` also takes "³" and "١", which ``int`` refuses or reads."""
    return text.isascii() and text.isdigit()


def env_int(name: str, default: int) -> int:
    """A whole-number variable (ASCII digits), or a coded USAGE error naming it."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not decimal(raw.strip()):
        raise UsageError(f"{name} must be a whole number of ASCII digits, got {raw!r}", field=name, found=raw)
    return int(raw)


def redact_url(url: str) -> str:
    """A database URL without its password (contexts get printed in notebooks and logs)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
