"""Job kinds: a registry mapping each kind to a handler ``(lib, payload, progress) -> result``.

Handlers must be idempotent: a message may be delivered again after a crash. The built-in ones are,
because versions are content-addressed (the same input gives the same ID and no second row) and
tiles are overwritten in place. A handler returns a dict; its ``"version"`` becomes the job's version.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagelib.errors import UsageError

if TYPE_CHECKING:
    from imagelib.context import Library

Progress = Callable[[float], None]
Handler = Callable[["Library", dict[str, Any], Progress], dict[str, Any]]

#: kind → handler; extend with :func:`register` (a module named in ``--import`` may do so at start).
handlers: dict[str, Handler] = {}


def register(kind: str) -> Callable[[Handler], Handler]:
    """Decorator: make the function the handler of job ``kind``."""

    def add(handler: Handler) -> Handler:
        handlers[kind] = handler
        return handler

    return add


def import_modules(names: list[str]) -> None:
    """Import modules that register extra job kinds (plugins, test-only kinds)."""
    for name in names:
        importlib.import_module(name)


def field(payload: dict[str, Any], name: str) -> Any:
    """A required payload field; its absence is the caller's error (USAGE), not a retryable failure."""
    if name not in payload:
        raise UsageError(f"job payload lacks {name!r}", field=name)
    return payload[name]


@register("ingest")
def ingest_job(lib: Library, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Ingest ``source`` (a staged upload or a path) as a version of ``namespace/dataset``."""
    from imagelib.ingestion import ingest

    return ingest(
        field(payload, "source"),
        field(payload, "namespace"),
        field(payload, "dataset"),
        rules=_rules(payload.get("rules")),
        sha256=payload.get("sha256"),
        lib=lib,
        record_job=False,  # the queue's job record is this ingest's only one
    )


def _rules(rules: Any) -> Any:
    """A rule set given inline (a JSON object) or as a path; None for the permissive default."""
    if rules is None or isinstance(rules, str | Path):
        return rules
    from pydantic import ValidationError

    from imagelib.validation.rules import RuleSet

    try:
        return RuleSet.model_validate(rules)
    except ValidationError as exc:
        raise UsageError(f"rule set: {exc}", code="RULES_INVALID", field="rules") from exc


@register("derive")
def derive_job(lib: Library, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Apply a filter ``chain`` to ``version``: the derived version (found, not recomputed, if it exists)."""
    from imagelib.derive import apply_version

    return apply_version(field(payload, "version"), field(payload, "chain"), lib=lib)


@register("tile")
def tile_job(lib: Library, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Write a DZI or XYZ pyramid of ``version`` to ``out`` (``options``: fmt, tile_size, chain, ...)."""
    from imagelib.tiling.export import tile_version

    options = dict(payload.get("options") or {})
    return tile_version(
        field(payload, "version"), payload.get("scheme", "dzi"), field(payload, "out"), lib=lib, **options
    )


#: share of a stitch job's progress bar given to registration (edges done / total); fusion gets the rest
STITCH_REGISTRATION_SHARE = 0.5


@register("stitch")
def stitch_job(lib: Library, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Stitch ``tiles`` (version IDs) by ``layout`` into a derived version with its report."""
    from imagelib.stitching import Layout, StitchParams, stitch

    result = stitch(
        list(field(payload, "tiles")),
        Layout.from_json(field(payload, "layout")),
        params=StitchParams.from_json(payload.get("params") or {}),
        namespace=payload.get("namespace"),
        dataset=payload.get("dataset"),
        lib=lib,
        progress=lambda phase, done, total: progress(stitch_fraction(phase, done, total)),
    )
    return result.summary()


def stitch_fraction(phase: str, done: int, total: int) -> float:
    """One 0..1 bar over both phases: edges registered fill the first share, chunks fused the rest."""
    part = done / max(total, 1)
    if phase == "register":
        return STITCH_REGISTRATION_SHARE * part
    return STITCH_REGISTRATION_SHARE + (1 - STITCH_REGISTRATION_SHARE) * part
