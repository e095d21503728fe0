"""JSON log lines of the queue and its workers: one object per line, carrying job and request IDs."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER = logging.getLogger("imagelib.queue")


class JsonLines(logging.Formatter):
    """Format a record as one JSON object (time, level, event and the fields passed in ``extra``)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(line, default=str)


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with structured fields (``job``, ``request_id``, ``kind``, ``attempt``, ...)."""
    LOGGER.log(level, event, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def log_to_stderr(level: int = logging.INFO) -> None:
    """Send the queue's log lines to stderr as JSON (the worker process does this once at start)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level)
    LOGGER.propagate = False
