"""Read-only catalog lookups on a SQLite catalog file through the standard library's driver.

Importing SQLAlchemy takes ~0.2 s, the largest part of a CLI tile export's start-up after zarr. The
tile path needs one value of one row, so a SQLite catalog whose schema is at :data:`HEAD_REVISION` is
asked directly, read-only. Anything this shortcut cannot answer (another database, a missing file or
row, an older schema, a locked or damaged file) gives None, and the caller asks
:class:`imagelib.catalog.Catalog`, which migrates, retries and raises the coded errors.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

HEAD_REVISION = "0002"  # newest file in catalog/migrations/versions (a test keeps the two in step)
SQLITE_SCHEMES = ("sqlite:///", "sqlite+pysqlite:///")


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///<path>`` URL; None for other URLs, in-memory databases and
    URLs with query options (SQLAlchemy interprets those)."""
    scheme = next((s for s in SQLITE_SCHEMES if url.startswith(s)), None)
    path = url[len(scheme) :] if scheme else ""
    if not path or path == ":memory:" or "?" in path:
        return None
    return Path(path)


def storage_url(catalog_url: str, version: str) -> str | None:
    """The ``storage_url`` of ``version`` read straight from a SQLite catalog; None when the shortcut
    cannot answer (see the module's docstring)."""
    path = sqlite_path(catalog_url)
    if path is None or not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=60)
    except sqlite3.Error:
        return None
    try:
        with conn:
            head = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            if head != (HEAD_REVISION,):
                return None
            row = conn.execute("SELECT storage_url FROM versions WHERE id = ?", (version,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return row[0] if row and isinstance(row[0], str) else None
