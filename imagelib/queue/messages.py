"""The message format shared by publishers and workers.

Body: JSON ``{"job": id, "kind": kind, "payload": {...}}``. Headers: ``x-request-id`` (the HTTP
request that submitted the job, carried into worker logs) and ``x-retries`` (failed attempts so far).
"""

from __future__ import annotations

import json
from typing import Any

from imagelib.hashing import jsonable

REQUEST_ID = "x-request-id"
RETRIES = "x-retries"
#: attempts a job gets before its message goes to the dead-letter queue
MAX_ATTEMPTS = 3


def encode(job_id: str, kind: str, payload: dict[str, Any]) -> bytes:
    """The message body of a job."""
    return json.dumps(jsonable({"job": job_id, "kind": kind, "payload": payload})).encode()


def decode(body: bytes) -> dict[str, Any]:
    """The job of a message body; ValueError when it is not a job message (a poison message)."""
    message = json.loads(body)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    if not (
        isinstance(message, dict)
        and isinstance(message.get("job"), str)
        and isinstance(message.get("kind"), str)
        and isinstance(message.get("payload", {}), dict)
    ):
        raise ValueError("not a job message: needs string 'job' and 'kind' and an object 'payload'")
    return message


def dead_letter_name(name: str) -> str:
    """The dead-letter queue of queue ``name``."""
    return f"{name}.dead"
