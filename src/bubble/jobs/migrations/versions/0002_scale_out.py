"""Scale-out: everything a run produces in the store; who ran it and its heartbeat.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("worker", sa.String(128)))
        batch.add_column(sa.Column("heartbeat_at", sa.Float))
    # Rows written from now on keep their content in the store, not in a file.
    with op.batch_alter_table("artifacts") as batch:
        batch.alter_column("path", existing_type=sa.Text, nullable=True)
    op.create_table(
        "output",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("stream", sa.String(8), primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "blobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blobs")
    op.drop_table("output")
    with op.batch_alter_table("artifacts") as batch:
        batch.alter_column("path", existing_type=sa.Text, nullable=False)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker")
