"""Catalog schema: Alembic migrations, the head shortcut, and name checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from imagelib.catalog import HEAD_REVISION, MIGRATIONS, Catalog, at_head, check_name
from imagelib.catalog.schema import metadata
from imagelib.errors import UsageError


def test_head_constant_matches_migrations() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrations_create_exactly_the_schema(catalog_env: str) -> None:
    catalog = Catalog(catalog_env)
    assert at_head(catalog.engine)
    tables = set(sa.inspect(catalog.engine).get_table_names())
    assert set(metadata.tables) | {"alembic_version"} == tables
    for name, table in metadata.tables.items():
        columns = {c["name"] for c in sa.inspect(catalog.engine).get_columns(name)}
        assert columns == {c.name for c in table.columns}
    Catalog(catalog_env)  # a second open finds the head and changes nothing
    assert at_head(catalog.engine)


def test_fresh_sqlite_is_not_at_head(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/empty.db")
    assert not at_head(engine)


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-lead", "x" * 129, "sp ace"])
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(UsageError) as info:
        check_name("dataset", name)
    assert info.value.code == "DATASET_NAME_INVALID"


def test_sqlite_readers_do_not_block_each_other(home: Path) -> None:
    catalog = Catalog()
    with catalog.begin(write=False) as outer:
        outer.execute(sa.text("SELECT count(*) FROM versions")).scalar()
        assert catalog.counts()["versions"] == 0  # a second reader while the first is open
        assert catalog.datasets() == []


def _row(version: str) -> dict:
    return {
        "id": version,
        "kind": "derived",
        "dims": ["y", "x"],
        "shape": [1, 1],
        "dtype": "uint8",
        "storage_url": f"file:///x/{version}",
    }


def test_lineage_walks_only_the_connected_dag(catalog_env: str) -> None:
    catalog = Catalog(catalog_env)
    ids = {name: name * 32 for name in "rabcdz"}  # r → a → c, r → b → c (diamond), c → d; z unrelated
    op = {"op": "filter"}
    catalog.add_version(_row(ids["r"]), "ns", "ds")
    catalog.add_version(_row(ids["z"]), "ns", "ds")
    for child, parents in (("a", "r"), ("b", "r"), ("c", "ab"), ("d", "c")):
        catalog.add_version(
            _row(ids[child]), "ns", "ds", parents={ids[p]: {**op, "to": child} for p in parents}
        )
    down = catalog.lineage(ids["r"])["descendants"]
    assert [d["version"] for d in down] == [
        ids["a"],
        ids["b"],
        ids["c"],
        ids["d"],
    ]  # breadth first, once each
    up = catalog.lineage(ids["d"])["ancestors"]
    assert [a["version"] for a in up] == [ids["c"], ids["a"], ids["b"], ids["r"]]
    assert up[0]["operation"] == {"op": "filter", "to": "d"}
    assert catalog.lineage(ids["z"]) == {"version": ids["z"], "ancestors": [], "descendants": []}


def _schema(engine: sa.Engine) -> dict[str, dict[str, object]]:
    """Everything the inspector reports of each table: columns (name, type, nullability, default),
    primary key, foreign keys, indexes and unique constraints."""
    inspector = sa.inspect(engine)
    found: dict[str, dict[str, object]] = {}
    for name in sorted(inspector.get_table_names()):
        found[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(name)
            ],
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "foreign_keys": sorted(
                (tuple(k["constrained_columns"]), k["referred_table"], tuple(k["referred_columns"]))
                for k in inspector.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(name)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(name)
            ),
        }
    return found


def test_fresh_sqlite_schema_is_the_migrated_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new SQLite catalog is created from the table definitions and stamped at head (no Alembic run);
    column for column, key for key and index for index it equals what the migrations build, and a
    database holding tables is migrated, never re-created."""
    from imagelib.catalog import create_fresh, migrate

    migrated = sa.create_engine(f"sqlite:///{tmp_path}/migrated.db")
    migrate(migrated)

    def no_migration(engine: sa.Engine) -> None:
        raise AssertionError("a new SQLite catalog ran the migrations")

    monkeypatch.setattr("imagelib.catalog.migrate", no_migration)
    catalog = Catalog(f"sqlite:///{tmp_path}/fresh.db")
    assert at_head(catalog.engine) and at_head(migrated)
    assert _schema(catalog.engine) == _schema(migrated)
    assert not create_fresh(catalog.engine)  # has tables: left alone
    behind = sa.create_engine(f"sqlite:///{tmp_path}/behind.db")
    with behind.begin() as conn:
        conn.execute(sa.text("CREATE TABLE other (x INTEGER)"))
    assert not create_fresh(behind)
    assert sa.inspect(behind).get_table_names() == ["other"]
