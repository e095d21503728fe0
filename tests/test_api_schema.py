"""schemathesis against the published OpenAPI document: no 5xx, no answer that violates the schema."""

from __future__ import annotations

import os
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

import imagelib
from imagelib.api import ApiSettings, create_app
from tests.test_api import GEO

#: examples per operation: the suite's time budget, not a coverage goal (raise it to hunt for bugs)
EXAMPLES = int(os.environ.get("IMAGELIB_SCHEMA_EXAMPLES", "10"))
QUIET = list(HealthCheck)


def test_api_conforms_to_its_schema(home: Path) -> None:
    lib = imagelib.connect()
    imagelib.ingest(GEO, "earth", "rgb", lib=lib)
    app = create_app(lib, settings=ApiSettings(access_log=False, max_upload_bytes=1_000_000))
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=QUIET)
        def check(case: schemathesis.Case) -> None:
            # Every check but "schema-valid input is accepted": bbox, datetime and chain texts have rules
            # (numbers, RFC 3339, op parameters) that a JSON-Schema string cannot state; those answer 400.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    lib.close()
