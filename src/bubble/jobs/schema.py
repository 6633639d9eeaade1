"""The database schema (SQLAlchemy Core): runs, events, artifacts, samples.

Portable on purpose: only types SQLite and PostgreSQL share, so a `postgresql://` URL can
replace the default SQLite file when users scale out.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# Run states. A run moves queued -> running -> one of the terminal states.
QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"  # the launcher reported how the target ended (any exit code)
TIMEOUT = "timeout"  # the target was killed at its wall-clock limit
FAILED = "failed"  # Bubble itself could not run it (bad program, launcher error)
INTERRUPTED = "interrupted"  # the server stopped or crashed while the run was in flight
CANCELLED = "cancelled"  # a user asked to stop it; its tree was killed, its events kept
# A running run a user asked to stop: a state in the store, so whichever worker executes the
# run (a thread here, an RQ worker elsewhere) sees the request and kills its tree.
CANCELLING = "cancelling"
TERMINAL = frozenset({COMPLETED, TIMEOUT, FAILED, INTERRUPTED, CANCELLED})
IN_FLIGHT = frozenset({QUEUED, RUNNING, CANCELLING})

runs = Table(
    "runs",
    metadata,
    # `num` orders the history and is the pagination cursor; `id` is the public name.
    Column("num", Integer, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("started_at", String(32)),
    Column("ended_at", String(32)),
    Column("command", JSON, nullable=False),  # argv list
    Column("command_line", Text),  # as the user typed it (display); else argv joined
    Column("policy", JSON, nullable=False),  # Policy fields
    Column("timeout", Float, nullable=False),
    Column("sample_id", String(36)),
    Column("upload_id", String(36)),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("duration_ms", Integer),
    Column("max_rss_kb", Integer),
    Column("timed_out", Boolean, nullable=False, default=False),
    Column("limit_hit", String(32)),
    Column("launcher_status", Integer),
    Column("last_seq", Integer, nullable=False, default=0),
    Column("counts", JSON),  # filled when the run ends; live runs count from `events`
    Column("fs_changes", JSON),  # {"files": [...], "modified": [...], "deleted": [...]}
    Column("error", Text),
    Column("hint", Text),
    Column("offline", Boolean),
)

events = Table(
    "events",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("category", String(8)),
    Column("ts", String(40)),
    # The normalised NDJSON line without its newline: served to clients verbatim.
    Column("data", Text, nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),  # stdout | stderr | events | dropped
    Column("name", Text, nullable=False),  # display only; never used as a path
    Column("path", Text, nullable=False),  # relative to the data dir, chosen by us
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_artifacts_run", "run_id"),
)

samples = Table(
    "samples",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),  # upload | command
    Column("name", Text, nullable=False),  # client's file name or argv[0]: display only
    Column("sha256", String(64)),
    Column("size", Integer),
    Column("file_type", String(16)),  # elf | script | data
    Column("executable", Boolean, nullable=False, default=False),
    Column("interpreter", Text),  # shebang hint, e.g. "/usr/bin/env python3"
    Column("created_at", String(32), nullable=False),
)
