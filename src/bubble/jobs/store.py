"""Persistence for runs, events, output, artifacts and samples through SQLAlchemy Core.

Every event is written here as it arrives (batched, one transaction per batch) and every
reader -- the SSE stream, the JSON poller, a permalink -- reads from here, which is what
makes resuming a stream lossless, and what lets the web server and the workers run on
different machines. With SQLite, writes are serialised by one lock (SQLite allows one
writer) while WAL mode lets readers proceed concurrently. With PostgreSQL (psycopg 3),
event batches go in with COPY.
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

from bubble.jobs import migrate, schema
from bubble.jobs.schema import artifacts, blobs, events, output, runs, samples

# States in which an executor holds the run (and moves its heartbeat).
EXECUTING = (schema.RUNNING, schema.CANCELLING)
COPY_EVENTS = "COPY events (run_id, seq, type, category, ts, data) FROM STDIN"


INT32_MAX = (1 << 31) - 1  # the widest integer column PostgreSQL has here (INTEGER)


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

    def __init__(self, url: str, upgrade_hint: str = "bubble db upgrade") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
            # Many SSE streams query briefly and often; keep connections around.
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 64
        else:
            # A server's SSE streams and a worker's pumps each hold a connection briefly;
            # a dead connection (database restarted) is replaced, not handed out.
            kwargs.update(pool_size=8, max_overflow=32, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._wlock = threading.Lock() if self.is_sqlite else None
        shown = self.engine.url.render_as_string(hide_password=True)
        migrate.ensure(self.engine, shown, upgrade_hint)

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
            # Query cursors are 63-bit; the column is 32-bit on PostgreSQL.
            query = query.where(runs.c.num < min(before, INT32_MAX))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def claim_run(self, run_id: str, worker: str) -> bool:
        """queued -> running for `worker`; False if someone else has it (or it ended)."""
        now = time.time()
        query = (
            runs.update()
            .where(
                runs.c.id == run_id,
                runs.c.status == schema.QUEUED,
            )
            .values(status=schema.RUNNING, started_at=now_iso(), worker=worker, heartbeat_at=now)
        )
        with self._write() as conn:
            return conn.execute(query).rowcount == 1

    def heartbeat(self, run_id: str) -> None:
        query = (
            runs.update()
            .where(runs.c.id == run_id, runs.c.status.in_(EXECUTING))
            .values(heartbeat_at=time.time())
        )
        with self._write() as conn:
            conn.execute(query)

    def stale_runs(self, older_than: float) -> list[tuple[str, str | None, str]]:
        """(id, worker, status) of executing runs whose last heartbeat is older than that."""
        query = select(runs.c.id, runs.c.worker, runs.c.status).where(
            runs.c.status.in_(EXECUTING), runs.c.heartbeat_at < older_than
        )
        with self.engine.connect() as conn:
            return [(r[0], r[1], r[2]) for r in conn.execute(query)]

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
            elif self.engine.dialect.name == "postgresql":
                _copy_events(conn, run_id, rows)
            else:  # any other database SQLAlchemy speaks
                conn.execute(events.insert(), [{"run_id": run_id, **r} for r in rows])
            conn.execute(runs.update().where(runs.c.id == run_id).values(last_seq=rows[-1]["seq"]))

    def events_after(self, run_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        # Numbering is gap-free, so the page is a bounded key range: PostgreSQL, with its
        # statistics stale while a flood lands, would otherwise fetch and sort every later
        # event of the run for each page (measured: 8,700 instead of 100,000+ events/s).
        query = _page(run_id, after, limit, events.c.data)
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(query).all()]

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

    def iter_events_ts(self, run_id: str, batch: int = 5000) -> Iterator[tuple[int, str, str]]:
        """(seq, ts, data) of every event of a run, in order (numbering is gap-free)."""
        after = 0
        while True:
            query = _page(run_id, after, batch, events.c.ts, events.c.data)
            with self.engine.connect() as conn:
                rows = [(r[0], r[1], r[2]) for r in conn.execute(query).all()]
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    # -- output -----------------------------------------------------------------------------
    def add_output(self, run_id: str, stream: str, offset: int, data: bytes) -> None:
        row = {"run_id": run_id, "stream": stream, "offset": offset, "data": data}
        with self._write() as conn:
            conn.execute(output.insert().values(**row))

    def output_after(self, run_id: str, stream: str, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes of a stream from byte `offset` (chunks are contiguous)."""
        query = (
            select(output.c.offset, output.c.data)
            .where(output.c.run_id == run_id, output.c.stream == stream)
            .order_by(output.c.offset)
        )
        start = self._chunk_at(run_id, stream, offset)
        if start is None:
            return b""
        parts: list[bytes] = []
        size = 0
        with self.engine.connect() as conn:
            for at, data in conn.execute(query.where(output.c.offset >= start)):
                parts.append(bytes(data)[max(0, offset - at) :])
                size += len(parts[-1])
                if size >= limit:
                    break
        return b"".join(parts)[:limit]

    def _chunk_at(self, run_id: str, stream: str, offset: int) -> int | None:
        """Offset of the chunk holding byte `offset`, if written yet."""
        query = select(func.max(output.c.offset)).where(
            output.c.run_id == run_id, output.c.stream == stream, output.c.offset <= offset
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    # -- blobs: uploads and dropped files ----------------------------------------------------
    def put_blob(self, blob_id: str, data: bytes) -> None:
        with self._write() as conn:
            conn.execute(blobs.insert().values(id=blob_id, data=data))

    def get_blob(self, blob_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(blobs.c.data).where(blobs.c.id == blob_id)).scalar()
        return None if found is None else bytes(found)

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


def _copy_events(conn: Connection, run_id: str, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY through psycopg 3, inside the caller's transaction: several
    times faster than an INSERT per row for a flood's batches."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
        for r in rows:
            copy.write_row((run_id, r["seq"], r["type"], r["category"], r["ts"], r["data"]))


def _page(run_id: str, after: int, limit: int, *cols: Any) -> Any:
    """(seq, *cols) of a run's events after `after`, at most `limit`, as a key range."""
    return (
        select(events.c.seq, *cols)
        .where(
            events.c.run_id == run_id,
            events.c.seq > min(after, INT32_MAX),
            events.c.seq <= min(after + limit, INT32_MAX),
        )
        .order_by(events.c.seq)
    )
