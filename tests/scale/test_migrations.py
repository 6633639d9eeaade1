"""Schema versions on SQLite and PostgreSQL: `bubble db upgrade` from an empty database and
from the schema before scale-out (data kept), and servers that refuse another schema."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from bubble.jobs import schema
from bubble.jobs.migrate import SchemaMismatch
from bubble.jobs.store import Store
from tests.scale import schema_main
from tests.servers import PostgresServer
from tests.web.helpers import ROOT, ServeProcess

RUN = "5b0c6d55-8f0e-4c55-9a4e-3f1e2d7c9a10"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bubble.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        yield server.fresh_url(migrated=False)


def db_upgrade(url: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bubble", "db", "upgrade", "--db-url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def schema_differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()


def test_upgrade_from_empty_reaches_the_current_schema(empty_db: str) -> None:
    assert "schema empty -> 0002" in db_upgrade(empty_db)
    assert schema_differences(empty_db) == []
    Store(empty_db).close()  # accepted as current
    assert "schema 0002 -> 0002" in db_upgrade(empty_db)  # idempotent


def test_a_new_empty_database_is_created_at_the_current_schema(empty_db: str) -> None:
    Store(empty_db).close()
    assert schema_differences(empty_db) == []
    assert "schema 0002 -> 0002" in db_upgrade(empty_db)


def _fill_previous_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        schema_main.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                schema_main.runs.insert().values(
                    id=RUN, status="completed", created_at="2026-11-01T00:00:00.000Z",
                    command=["/bin/true"], policy={"deny_fs": True}, timeout=8.0,
                    timed_out=False, last_seq=2, exit_code=0,
                )
            )  # fmt: skip
            conn.execute(
                schema_main.events.insert(),
                [
                    {"run_id": RUN, "seq": s, "type": "sandbox.msg", "data": f'{{"seq":{s}}}'}
                    for s in (1, 2)
                ],
            )
            conn.execute(
                schema_main.artifacts.insert().values(
                    id="a", run_id=RUN, kind="stdout", name="stdout.txt",
                    path=f"runs/{RUN}/stdout.txt", size=0, sha256="0" * 64, created_at="x",
                )
            )  # fmt: skip
    finally:
        engine.dispose()


def test_upgrade_from_the_previous_schema_keeps_the_data(empty_db: str) -> None:
    _fill_previous_schema(empty_db)
    with pytest.raises(SchemaMismatch) as refused:
        Store(empty_db)
    assert "schema 0001" in refused.value.message and "bubble db upgrade" in refused.value.hint
    assert "schema 0001 -> 0002" in db_upgrade(empty_db)
    assert schema_differences(empty_db) == []
    store = Store(empty_db)
    try:
        run = store.get_run(RUN)
        assert run is not None and run["status"] == "completed" and run["worker"] is None
        assert [seq for seq, _ in store.events_after(RUN, 0, 10)] == [1, 2]
        assert store.artifacts_of(RUN)[0]["path"] == f"runs/{RUN}/stdout.txt"
        store.add_output(RUN, "stdout", 0, b"new table works")
        assert store.output_after(RUN, "stdout", 4, 100) == b"table works"
    finally:
        store.close()


def test_servers_refuse_an_older_schema_and_name_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _fill_previous_schema(f"sqlite:///{data / 'bubble.db'}")
    with pytest.raises(RuntimeError) as serve:
        ServeProcess(data)
    assert "bubble db upgrade --data-dir" in str(serve.value)
    worker = ["worker", "--queue-url", "redis://127.0.0.1:1/0", "--data-dir", str(data)]
    proc = subprocess.run(
        [sys.executable, "-m", "bubble", *worker],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode != 0 and "bubble db upgrade" in proc.stderr, proc.stderr


def test_a_newer_schema_is_refused(empty_db: str) -> None:
    Store(empty_db).close()
    engine = create_engine(empty_db)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(SchemaMismatch, match="newer"):
        Store(empty_db)


def test_upgrading_a_data_dir_moves_old_files_into_the_store(tmp_path: Path) -> None:
    from tests.web.helpers import make_app

    data = tmp_path / "data"
    (data / "runs" / RUN).mkdir(parents=True)
    (data / "runs" / RUN / "stdout.txt").write_bytes(b"old output\n")
    _fill_previous_schema(f"sqlite:///{data / 'bubble.db'}")
    proc = subprocess.run(
        [sys.executable, "-m", "bubble", "db", "upgrade", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0 and "1 files" in proc.stdout, proc.stdout + proc.stderr
    app = make_app(data)
    try:
        client = app.test_client()
        (art,) = client.get(f"/api/runs/{RUN}").get_json()["artifacts"]
        assert art["kind"] == "stdout"
        seed = app.extensions["bubble"].store.output_after(RUN, "stdout", 0, 100)
        assert seed == b"old output\n"
    finally:
        from bubble.web import shutdown

        shutdown(app)
