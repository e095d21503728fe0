"""The ``imagelib`` command line (typer). ``--json`` prints exactly one JSON document on stdout.

Exit codes: 0 success/valid, 1 invalid input or a coded failure, 2 usage error. Progress bars and
human messages go to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from imagelib.errors import ImagelibError, UsageError, ValidationFailed, from_exception
from imagelib.hashing import jsonable

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Large scientific rasters: ingest, validate, version, tile, filter.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]


def emit(value: Any, as_json: bool) -> None:
    """Print a result: strict JSON with --json, else a readable rendering."""
    if as_json:
        sys.stdout.write(json.dumps(jsonable(value), allow_nan=False) + "\n")
    elif isinstance(value, list):
        for item in value:
            typer.echo(json.dumps(jsonable(item)))
    else:
        typer.echo(json.dumps(jsonable(value), indent=2))


def fail(exc: ImagelibError, as_json: bool) -> NoReturn:
    """Report a coded error (stdout JSON with --json, stderr text otherwise); exit with the table's code."""
    body = exc.report if isinstance(exc, ValidationFailed) else {"error": exc.to_dict()}
    if as_json:
        sys.stdout.write(json.dumps(jsonable(body)) + "\n")
    else:
        typer.echo(f"error [{exc.code}]: {exc.message}", err=True)
    raise typer.Exit(exc.spec.exit)


def coded(command: F) -> F:
    """Every failure of a command becomes its coded error (one JSON document with --json), never a
    traceback: imagelib's errors as they are, anything unexpected as INTERNAL."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            fail(from_exception(exc), bool(kwargs.get("as_json")))

    return run  # type: ignore[return-value]


@contextmanager
def uncollected() -> Iterator[None]:
    """Pause the cyclic collector while a command imports its modules: the imports make ~150 000
    objects, none of them garbage, and every generation-2 collection they trigger walks all made so far
    (~0.15 s of CPU of every ingest, measured). It is switched back on after, if it was on."""
    import gc  # here: the module's name `gc` is the command below

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def frozen_imports() -> Iterator[None]:
    """Keep the objects alive now (~150 000, nearly all from imports, none ever garbage) out of the
    cyclic collector's generations while the block runs: every full collection walked them all, ~0.5 s
    of a 4 s ingest. A command only; a library call in a kernel leaves the user's objects alone, and an
    in-process caller of the CLI (tests, ``CliRunner``) gets them back collectable afterwards."""
    import gc  # here: the module's name `gc` is the command below

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@app.command()
@coded
def validate(
    path: Annotated[str, typer.Argument(help="file, directory (Zarr) or file#/address")],
    rules: Annotated[Path | None, typer.Option(help="YAML/JSON rule set")] = None,
    sha256: Annotated[str | None, typer.Option(help="declared sha256 of the file")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a file; exit 0 when valid, 1 when invalid."""
    from imagelib.validation import validate as run

    report = run(path, rules=rules, sha256=sha256)  # only a broken rule file raises
    emit(report, as_json)
    raise typer.Exit(0 if report["valid"] else 1)


@app.command()
@coded
def ingest(
    path: Annotated[str, typer.Argument(help="file, directory (Zarr) or file#/address")],
    namespace: Annotated[str, typer.Option(help="namespace (project/group)")],
    dataset: Annotated[str, typer.Option(help="dataset name inside the namespace")],
    rules: Annotated[Path | None, typer.Option(help="YAML/JSON rule set")] = None,
    sha256: Annotated[str | None, typer.Option(help="declared sha256 of the file")] = None,
    tiles: Annotated[str | None, typer.Option(help="also write a pyramid: dzi|xyz")] = None,
    out: Annotated[str, typer.Option(help="--tiles: output folder or URL")] = ".",
    fmt: Annotated[
        str | None, typer.Option("--format", help="--tiles: jpg|png|webp (dzi: jpg, xyz: png)")
    ] = None,
    tile_size: Annotated[int, typer.Option(help="--tiles: DZI tile size")] = 254,
    overlap: Annotated[int, typer.Option(help="--tiles: DZI tile overlap")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Validate, version and store a file; prints the new (or existing) version."""
    with uncollected():
        from imagelib.formats.registry import readers
        from imagelib.ingestion import TileRequest
        from imagelib.ingestion import ingest as run

        readers()  # the built-in readers' imports (rasterio, …) before the freeze
    progress = sys.stderr.isatty() or not as_json
    request = None if tiles is None else TileRequest(out, fmt, tile_size, overlap, tiles)
    with frozen_imports():
        result = run(path, namespace, dataset, rules=rules, sha256=sha256, progress=progress, tiles=request)
    emit(result, as_json)


@app.command()
@coded
def versions(
    name: Annotated[str, typer.Argument(help="NAMESPACE/DATASET")],
    as_json: JsonOpt = False,
) -> None:
    """List the versions of a dataset, oldest first."""
    from imagelib.library import versions as run

    namespace, dataset = _split_name(name)
    emit(run(namespace, dataset), as_json)


def _split_name(name: str) -> tuple[str, str]:
    if name.count("/") != 1:
        raise UsageError(f"{name!r} must be NAMESPACE/DATASET", field="name")
    namespace, dataset = name.split("/")
    return namespace, dataset


@app.command()
@coded
def lineage(version: str, as_json: JsonOpt = False) -> None:
    """Ancestors and descendants of a version with each edge's operation."""
    from imagelib.library import lineage as run

    emit(run(version), as_json)


@app.command("filter")
@coded
def filter_(
    version: str,
    chain: Annotated[str, typer.Option(help="JSON file with the list of ops, or the JSON text itself")],
    as_json: JsonOpt = False,
) -> None:
    """Apply a filter chain to a version: a new derived version with lineage (idempotent)."""
    from imagelib.derive import apply_version

    emit(apply_version(version, chain, progress=not as_json), as_json)


@app.command()
@coded
def search(
    bbox: Annotated[str | None, typer.Option(help="W,S,E,N in EPSG:4326")] = None,
    time: Annotated[str | None, typer.Option(help="START/END (ISO 8601; either side may be '..')")] = None,
    namespace: Annotated[str | None, typer.Option()] = None,
    dtype: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find versions by bounding box, time range, namespace and dtype."""
    from imagelib.library import search as run

    emit(run(bbox=parse_bbox(bbox), time=parse_interval(time), namespace=namespace, dtype=dtype), as_json)


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``"W,S,E,N"`` → floats, checked."""
    if text is None:
        return None
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise UsageError(f"--bbox {text!r} must be W,S,E,N numbers", field="bbox") from exc
    if south > north or not (-90 <= south <= 90 and -90 <= north <= 90):
        raise UsageError(f"--bbox {text!r}: need -90 <= S <= N <= 90", field="bbox")
    return west, south, east, north


def parse_interval(text: str | None) -> tuple[datetime | None, datetime | None] | None:
    """``"START/END"`` (ISO 8601, ``..`` open) → aware datetimes."""
    if text is None:
        return None
    from imagelib.stored import parse_time

    parts = text.split("/")
    if len(parts) != 2:
        raise UsageError(f"--time {text!r} must be START/END", field="time")
    bounds = [None if p in ("", "..") else parse_time(p) for p in parts]
    for part, value in zip(parts, bounds, strict=True):
        if part not in ("", "..") and value is None:
            raise UsageError(f"--time: {part!r} is not an ISO 8601 date/time", field="time")
    return bounds[0], bounds[1]


@app.command()
@coded
def gc(as_json: JsonOpt = False) -> None:
    """Remove abandoned staging data left by killed ingests and expired upload spools (tus, multipart)."""
    from imagelib.api.settings import ApiSettings
    from imagelib.api.spool import expire_uploads, spool_dir
    from imagelib.context import current

    lib, api = current(), ApiSettings.from_env()
    removed_uploads = expire_uploads(spool_dir(lib.settings.home, api), api.upload_expiry_s)
    emit({"removed_staging": lib.store.collect_staging(), "removed_uploads": removed_uploads}, as_json)


@app.command()
@coded
def demo(
    serve: Annotated[bool, typer.Option(help="serve the viewer after building")] = True,
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """A guided local run: ingest the sample data, validate, version, build pyramids, view."""
    from imagelib.demo import run_demo

    run_demo(serve=serve, port=port)


@app.command("tile")
@coded
def tile(
    version: str,
    out: Annotated[str, typer.Option(help="output folder or URL (s3://bucket/prefix)")],
    scheme: Annotated[str, typer.Option(help="dzi (any image) or xyz (georeferenced)")] = "dzi",
    fmt: Annotated[str | None, typer.Option("--format", help="jpg|png|webp (dzi: jpg, xyz: png)")] = None,
    tile_size: Annotated[int, typer.Option(help="DZI tile size")] = 254,
    overlap: Annotated[int, typer.Option(help="DZI tile overlap")] = 1,
    embed: Annotated[bool, typer.Option(help="also write index.html + vendored viewer")] = False,
    archive: Annotated[
        bool, typer.Option(help="all tiles in one packed <name>.zip (read with HTTP Range) instead of files")
    ] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="render threads (default: one per core)")] = None,
    axis: Annotated[str | None, typer.Option(help="volumes: slice across z|y|x, or views (xy+xz+yz)")] = None,
    index: Annotated[int | None, typer.Option(help="volumes: slice index (default: centre)")] = None,
    chain: Annotated[
        str | None, typer.Option(help="filter chain (JSON file or text) applied before scaling")
    ] = None,
    bands: Annotated[str | None, typer.Option(help="1-based bands shown as RGB, e.g. 4,3,2")] = None,
    colormap: Annotated[str | None, typer.Option(help="single band: gray|viridis|magma|inferno")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a DZI or XYZ pyramid of a version (progress bar on stderr)."""
    from imagelib.tiling.export import orthogonal_views, tile_version
    from imagelib.tiling.scale import Style

    style = Style(bands=parse_bands(bands), colormap=colormap)
    if axis == "views":  # the three orthogonal views of a volume
        result = orthogonal_views(version, out, embed=embed, style=style, progress=True, fmt=fmt or "png")
    else:
        options = {"tile_size": tile_size, "overlap": overlap, "axis": axis, "index": index, "chain": chain}
        options.update(archive=archive, workers=workers)
        result = tile_version(
            version, scheme, out, fmt=fmt, embed=embed, style=style, progress=True, **options
        )
    emit(result, as_json)


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """``"4,3,2"`` → ``(4, 3, 2)`` (1-based band numbers), checked."""
    if not text:
        return None
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError as exc:
        raise UsageError(f"--bands {text!r} must be comma-separated integers", field="bands") from exc


@app.command()
@coded
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="jobs run at once (also the prefetch)")] = 1,
    queue: Annotated[str, typer.Option(envvar="IMAGELIB_QUEUE_NAME", help="queue name")] = "imagelib.jobs",
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", envvar="IMAGELIB_WORKER_IMPORTS", help="module registering extra job kinds"),
    ] = None,
) -> None:
    """Run queued jobs from IMAGELIB_QUEUE (an AMQP URL) until SIGTERM; JSON log lines on stderr."""
    from imagelib.queue.worker import serve_forever

    serve_forever(concurrency=concurrency, name=queue, imports=imports or [])


@app.command("dev-idp")
@coded
def dev_idp(
    realm: Annotated[Path | None, typer.Option(help="Keycloak realm export file")] = None,
    host: Annotated[str, typer.Option(help="loopback address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: a free one)")] = 8080,
    keys: Annotated[Path | None, typer.Option(help="private JWKS file (keys survive restarts)")] = None,
    allow_remote: Annotated[bool, typer.Option(help="allow a non-loopback --host")] = False,
    public_url: Annotated[str | None, typer.Option(help="base URL if not http://HOST:PORT")] = None,
) -> None:
    """Serve the Keycloak-compatible dev identity provider; prints its issuer URL on stdout."""
    from imagelib.idp import serve

    def ready(idp: Any) -> None:
        sys.stdout.write(idp.issuer + "\n")
        sys.stdout.flush()

    serve(realm, host, port, keys_file=keys, allow_remote=allow_remote, public_url=public_url, on_ready=ready)


@app.command()
@coded
def serve(
    host: Annotated[str, typer.Option(help="address to bind (non-loopback needs IMAGELIB_OIDC_ISSUER)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="server processes (one per core for tile traffic)")] = 1,
) -> None:
    """Run the HTTP API (FastAPI on uvicorn; OpenAPI at /v1/openapi.json, docs at /v1/docs)."""
    from imagelib.api.serve import serve as run

    run(host, port, workers=workers)


@app.command()
@coded
def viewer(
    port: Annotated[int, typer.Option(help="port")] = 5006,
    host: Annotated[str, typer.Option(help="loopback address to listen on")] = "127.0.0.1",
    show: Annotated[bool, typer.Option(help="open a browser tab")] = False,
) -> None:
    """Serve the Panel app (browser, deep zoom, chains, share links); prints its URL on stdout."""
    from imagelib.viewer.serve import serve as run

    run(port, host, show)


audit_app = typer.Typer(help="The audit log's hash chain.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
@coded
def audit_verify(as_json: JsonOpt = False) -> None:
    """Walk the audit hash chain; exit 1 when a row was edited, deleted or reordered."""
    from imagelib.audit import verify
    from imagelib.context import current

    result = verify(current().catalog)
    emit(result, as_json)
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("stitch")
@coded
def stitch(
    versions: Annotated[list[str], typer.Argument(help="tile version IDs, in layout order")],
    layout: Annotated[Path, typer.Option(help="layout JSON (Layout.to_json(): positions, tile_shape)")],
    params: Annotated[Path | None, typer.Option(help="JSON object of stitch parameters")] = None,
    namespace: Annotated[str | None, typer.Option(help="default: the first tile's namespace")] = None,
    dataset: Annotated[str | None, typer.Option(help="default: '<first tile's dataset>-mosaic'")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stitch tile versions into a mosaic: a derived version with lineage (idempotent)."""
    from imagelib.stitching import Layout, StitchParams
    from imagelib.stitching import stitch as run

    options = StitchParams.from_json(json.loads(params.read_text()) if params else {})
    tiles = Layout.from_json(layout)
    result = run(versions, tiles, namespace=namespace, dataset=dataset, params=options, progress=not as_json)
    emit(result.summary(), as_json)


catalog_app = typer.Typer(help="intake catalogs of the library's versions.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("export")
@coded
def catalog_export(
    out: Annotated[Path, typer.Option(help="the intake 2 catalog YAML to write")],
    namespace: Annotated[str | None, typer.Option(help="only this namespace's versions")] = None,
    location: Annotated[
        bool, typer.Option(help="pin this library's store/catalog URLs into the entries (else: the env's)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write an intake catalog: an entry per version (imagelib.open's lazy xarray), datasets as aliases."""
    try:
        from imagelib.intake_export import export_catalog
    except ModuleNotFoundError as exc:
        raise UsageError(f"{exc.name} is missing: pip install 'imagelib[catalog]'", field="out") from exc
    emit(export_catalog(out, namespace, location=location), as_json)
