"""The upload spool's location and expiry (kept free of web imports: ``imagelib gc`` uses it)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from imagelib.api.settings import ApiSettings


def spool_dir(home: Path, settings: ApiSettings) -> Path:
    """Where uploads are spooled: ``IMAGELIB_UPLOAD_DIR`` or ``$IMAGELIB_HOME/uploads``."""
    return settings.upload_dir or home / "uploads"


def expire_uploads(root: Path, max_age_s: float) -> int:
    """Remove upload folders untouched for ``max_age_s`` (abandoned tus uploads, finished spools)."""
    if not root.is_dir():
        return 0
    cutoff, removed = time.time() - max_age_s, 0
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
        if newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
