"""The schema before scale-out: runs, events, artifacts (files on disk), samples.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("num", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("started_at", sa.String(32)),
        sa.Column("ended_at", sa.String(32)),
        sa.Column("command", sa.JSON, nullable=False),
        sa.Column("command_line", sa.Text),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("timeout", sa.Float, nullable=False),
        sa.Column("sample_id", sa.String(36)),
        sa.Column("upload_id", sa.String(36)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("signal", sa.Integer),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("max_rss_kb", sa.Integer),
        sa.Column("timed_out", sa.Boolean, nullable=False),
        sa.Column("limit_hit", sa.String(32)),
        sa.Column("launcher_status", sa.Integer),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("counts", sa.JSON),
        sa.Column("fs_changes", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("hint", sa.Text),
        sa.Column("offline", sa.Boolean),
    )
    op.create_table(
        "events",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("category", sa.String(8)),
        sa.Column("ts", sa.String(40)),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_artifacts_run", "artifacts", ["run_id"])
    op.create_table(
        "samples",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("size", sa.Integer),
        sa.Column("file_type", sa.String(16)),
        sa.Column("executable", sa.Boolean, nullable=False),
        sa.Column("interpreter", sa.Text),
        sa.Column("created_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    for table in ("samples", "artifacts", "events", "runs"):
        op.drop_table(table)
