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
