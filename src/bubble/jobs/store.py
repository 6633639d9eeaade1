"""Persistence for runs, events, artifacts and samples through SQLAlchemy Core.

Every event is written here as it arrives (batched, one transaction per batch) and every
reader -- the SSE stream, the JSON poller, a permalink -- reads from here, which is what
makes resuming a stream lossless. With SQLite, writes are serialised by one lock (SQLite
allows one writer) while WAL mode lets readers proceed concurrently.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event, func, select
from sqlalchemy.engine import Engine

from bubble.jobs import schema
from bubble.jobs.schema import artifacts, events, runs, samples


def new_id() -> str:
    """A fresh public identifier (UUID4, the seed's format)."""
    return str(uuid.uuid4())


def now_iso() -> str:
    """The current time, RFC 3339 UTC with milliseconds."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode, and keeps commits cheap.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Store:
    """Tables plus the queries the orchestrator and the web layer need."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
            # Many SSE streams query briefly and often; keep connections around.
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 64
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._wlock = threading.Lock() if self.is_sqlite else None
        schema.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._wlock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._wlock, self.engine.begin() as conn:
            yield conn

    # -- runs ---------------------------------------------------------------------------
    def create_run(self, row: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(runs.insert().values(**row))

    def update_run(self, run_id: str, **values: Any) -> None:
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    def set_status_if(self, run_id: str, expected: str, **values: Any) -> bool:
        """Move a run out of status `expected` only if it is still there (compare and set:
        a worker claiming a queued run and a user cancelling it cannot both win)."""
        query = runs.update().where(runs.c.id == run_id, runs.c.status == expected)
        with self._write() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        return dict(row) if row else None

    def run_state(self, run_id: str) -> tuple[str, int] | None:
        """(status, last_seq) -- the cheap question a stream asks while it waits."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(runs.c.status, runs.c.last_seq).where(runs.c.id == run_id)
            ).first()
        return (row[0], row[1]) if row else None

    def list_runs(self, limit: int, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first; `before` is the `num` of the last run of the previous page."""
        query = select(runs).order_by(runs.c.num.desc()).limit(limit)
        if before is not None:
            query = query.where(runs.c.num < before)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def runs_in_flight(self) -> list[str]:
        query = select(runs.c.id).where(runs.c.status.in_(sorted(schema.IN_FLIGHT)))
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    # -- events -------------------------------------------------------------------------
    def insert_events(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Append a batch (rows carry seq, type, category, ts, data) in one transaction,
        moving the run's `last_seq` with it so readers never see one without the other."""
        if not rows:
            return
        with self._write() as conn:
            if self.is_sqlite:
                # Straight to the driver: Core's per-row parameter processing would cost
                # more than the insert itself in a flood.
                conn.exec_driver_sql(
                    "INSERT INTO events (run_id, seq, type, category, ts, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (run_id, r["seq"], r["type"], r["category"], r["ts"], r["data"])
                        for r in rows
                    ],
                )
            else:
                conn.execute(events.insert(), [{"run_id": run_id, **r} for r in rows])
            conn.execute(runs.update().where(runs.c.id == run_id).values(last_seq=rows[-1]["seq"]))

    def events_after(self, run_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        query = (
            select(events.c.seq, events.c.data)
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(query)]

    def event_counts(self, run_id: str) -> list[tuple[str, str | None, int]]:
        query = (
            select(events.c.type, events.c.category, func.count())
            .where(events.c.run_id == run_id)
            .group_by(events.c.type, events.c.category)
        )
        with self.engine.connect() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(query)]

    def iter_events(self, run_id: str, batch: int = 5000) -> Iterator[tuple[int, str]]:
        after = 0
        while rows := self.events_after(run_id, after, batch):
            yield from rows
            after = rows[-1][0]

    # -- artifacts and samples ----------------------------------------------------------
    def add_artifacts(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._write() as conn:
                conn.execute(artifacts.insert(), rows)

    def artifacts_of(self, run_id: str) -> list[dict[str, Any]]:
        query = (
            select(artifacts)
            .where(artifacts.c.run_id == run_id)
            .order_by(artifacts.c.created_at, artifacts.c.kind)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def get_artifact(self, run_id: str, artifact_id: str) -> dict[str, Any] | None:
        query = select(artifacts).where(artifacts.c.id == artifact_id, artifacts.c.run_id == run_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def add_sample(self, row: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(samples.insert().values(**row))

    def samples_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Several samples in one query (the history's names and hashes)."""
        wanted = sorted({i for i in ids if i})
        if not wanted:
            return {}
        query = select(samples).where(samples.c.id.in_(wanted))
        with self.engine.connect() as conn:
            return {r["id"]: dict(r) for r in conn.execute(query).mappings()}

    def get_sample(self, sample_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(samples).where(samples.c.id == sample_id)).mappings().first()
        return dict(row) if row else None
