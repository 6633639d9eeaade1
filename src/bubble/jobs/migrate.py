"""Schema versions: refuse an older database, create an empty one, upgrade with Alembic.

A new, empty database is created from the metadata and stamped with `SCHEMA_VERSION` (no
Alembic import on the common path: `make run` and every test app start on an empty file);
a test proves that the migrations from empty reach the same schema. Any other database must
carry `SCHEMA_VERSION`, or `serve`/`worker` refuse to start and name `bubble db upgrade`.
A database from before versioning (runs table, no `alembic_version`) is revision 0001.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

from bubble.errors import BubbleError
from bubble.jobs import schema

UNVERSIONED = "0001"  # what a database with tables but no version table is


class SchemaMismatch(BubbleError):
    """The database was written by another version of Bubble."""


def version_of(conn: Connection) -> str | None:
    """The database's schema revision; None if it is empty."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        if row is not None:
            return str(row[0])
    return UNVERSIONED if "runs" in tables else None


def ensure(engine: Engine, shown_url: str, upgrade_hint: str) -> None:
    """Create an empty database; accept the current one; refuse any other."""
    with engine.begin() as conn:
        found = version_of(conn)
        if found is None:
            schema.metadata.create_all(conn)
            _stamp(conn, schema.SCHEMA_VERSION)
            return
    if found == schema.SCHEMA_VERSION:
        return
    if found < schema.SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the database {shown_url} has schema {found}, this Bubble needs "
            f"{schema.SCHEMA_VERSION}",
            f"stop every server and worker using it, then run `{upgrade_hint}`",
        )
    raise SchemaMismatch(
        f"the database {shown_url} has schema {found}, newer than this Bubble's "
        f"{schema.SCHEMA_VERSION}",
        "upgrade Bubble on this machine to the version the others run",
    )


def _stamp(conn: Connection, version: str) -> None:
    conn.execute(
        text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    )
    conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})


def upgrade(engine: Engine, target: str = "head") -> tuple[str | None, str]:
    """Migrate to `target`; returns (revision before, revision after)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        before = version_of(conn)
        cfg.attributes["connection"] = conn
        if before == UNVERSIONED and "alembic_version" not in inspect(conn).get_table_names():
            command.stamp(cfg, UNVERSIONED)
        command.upgrade(cfg, target)
        return before, version_of(conn) or ""
