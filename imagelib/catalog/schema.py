"""Catalog tables (SQLAlchemy Core). Alembic migrations under ``migrations/`` create and evolve them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

namespaces = sa.Table(
    "namespaces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace_id", sa.Integer, sa.ForeignKey("namespaces.id"), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("namespace_id", "name", name="uq_datasets_namespace_name"),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # root | derived
    sa.Column("format", sa.String(32)),
    sa.Column("dims", sa.JSON, nullable=False),
    sa.Column("shape", sa.JSON, nullable=False),
    sa.Column("dtype", sa.String(16), nullable=False),
    sa.Column("crs", sa.Text),
    sa.Column("bounds", sa.JSON),  # native CRS [minx, miny, maxx, maxy]
    sa.Column("west", sa.Float),
    sa.Column("south", sa.Float),  # EPSG:4326 bbox for search
    sa.Column("east", sa.Float),
    sa.Column("north", sa.Float),
    sa.Column("time_start", sa.DateTime(timezone=True)),
    sa.Column("time_end", sa.DateTime(timezone=True)),
    sa.Column("checksum", sa.String(64)),  # sha256 of the source bytes (root versions)
    sa.Column("address", sa.Text),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("storage_url", sa.Text, nullable=False),
    sa.Column("stats", sa.JSON),
    sa.Column("attrs", sa.JSON),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_versions_bbox", "west", "south", "east", "north"),
    sa.Index("ix_versions_checksum", "checksum"),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("version_id", sa.String(32), sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

lineage = sa.Table(
    "lineage",
    metadata,
    sa.Column("parent_id", sa.String(32), sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("child_id", sa.String(32), sa.ForeignKey("versions.id"), primary_key=True),
    sa.Column("operation", sa.JSON, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # queued | running | succeeded | failed
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("payload", sa.JSON),
    sa.Column("version_id", sa.String(32)),
    sa.Column("report", sa.JSON),
    sa.Column("error", sa.JSON),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("namespace", sa.String(128)),
    sa.Column("target", sa.String(256)),
    sa.Column("details", sa.JSON),
    # hash chain (revision 0002): each row's hash covers its fields and the previous row's hash
    sa.Column("outcome", sa.String(32)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("hash", sa.String(64)),
)
