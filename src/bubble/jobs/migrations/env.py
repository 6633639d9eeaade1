"""Alembic environment: always handed an open connection by `bubble.jobs.migrate`."""

from __future__ import annotations

from alembic import context

from bubble.jobs.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER a column: Alembic copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
