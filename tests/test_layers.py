"""DESIGN.md's dependency direction, checked on every import statement of the package (top-level and
inside functions): pure modules never reach the model layer, storage never reaches the catalog, and no
core module imports a face."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import imagelib

PACKAGE = Path(imagelib.__file__).parent
#: array-in/array-out and file-format code: no catalog, store, context or stored versions
PURE = ("imagelib.formats", "imagelib.validation", "imagelib.filters", "imagelib.backend", "imagelib.errors")
MODEL = (
    "imagelib.catalog",
    "imagelib.catalog_read",
    "imagelib.storage",
    "imagelib.context",
    "imagelib.stored",
    "imagelib.jobs",
)
FACES = (
    "imagelib.cli",
    "imagelib.__main__",
    "imagelib.api",
    "imagelib.widgets",
    "imagelib.viewer",
    "imagelib.demo",
)


def module_name(path: Path) -> str:
    """``imagelib/tiling/render.py`` → ``imagelib.tiling.render``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every absolute module an ``import``/``from … import`` in the file names (relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here if path.name == "__init__.py" else here[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    """True when ``name`` is one of ``prefixes`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Modules under ``sources`` importing anything under ``forbidden``."""
    found = {}
    for module, imported in MODULES.items():
        if within(module, sources):
            bad = sorted(i for i in imported if within(i, forbidden))
            if bad:
                found[module] = bad
    return found


def test_pure_modules_never_import_the_model_layer() -> None:
    """formats, validation, filters, backend and errors know nothing of catalog, store or context."""
    assert not violations(PURE, MODEL)


def test_storage_never_imports_the_catalog() -> None:
    """The store knows nothing of the catalog."""
    forbidden = ("imagelib.catalog", "imagelib.catalog_read", "imagelib.context", "imagelib.stored")
    assert not violations(("imagelib.storage",), forbidden)


def test_no_core_module_imports_a_face() -> None:
    """cli, api, widgets, viewer and demo sit on top; nothing below imports them."""
    core = tuple(sorted({m for m in MODULES if not within(m, FACES)} - {"imagelib"}))
    assert not violations(core, FACES)


def test_ingestion_and_derive_do_not_import_each_other() -> None:
    """Both write versions through imagelib.stored; neither imports the other."""
    assert not within_any(MODULES["imagelib.ingestion"], "imagelib.derive")
    assert not within_any(MODULES["imagelib.derive"], "imagelib.ingestion")


def test_versioning_does_not_import_the_package_facade() -> None:
    """versioning reads the version from imagelib._version, not the lazy package facade."""
    assert "imagelib" not in MODULES["imagelib.versioning"]


def test_tiling_embed_and_export_are_not_circular() -> None:
    """export uses embed; embed does not import export back."""
    assert within_any(MODULES["imagelib.tiling.export"], "imagelib.tiling.embed")
    assert not within_any(MODULES["imagelib.tiling.embed"], "imagelib.tiling.export")


def within_any(imported: set[str], prefix: str) -> bool:
    """True when any imported name is ``prefix`` or inside it."""
    return any(within(name, (prefix,)) for name in imported)


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ("imagelib.formats.tiff", "imagelib.catalog", True),
        ("imagelib.tiling.render", "imagelib.cli", True),
        ("imagelib.storage", "imagelib.catalogue_like", False),
    ],
)
def test_the_checker_itself_flags_what_it_should(source: str, target: str, expected: bool) -> None:
    """The rule checker is not vacuous: a planted import is reported (and a look-alike name is not)."""
    MODULES[source] = MODULES[source] | {target}
    try:
        rules = {
            "imagelib.catalog": (PURE, MODEL),
            "imagelib.cli": (tuple(m for m in MODULES if not within(m, FACES)), FACES),
            "imagelib.catalogue_like": (("imagelib.storage",), ("imagelib.catalog",)),
        }
        sources, forbidden = rules[target]
        assert (source in violations(sources, forbidden)) is expected
    finally:
        MODULES[source] = MODULES[source] - {target}
