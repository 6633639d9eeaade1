"""`bubble db upgrade`: bring the store's schema to this Bubble's version (Alembic)."""

from __future__ import annotations

import argparse

from bubble.errors import UsageError
from bubble.jobs import settings
from bubble.jobs.model import JobsConfig


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bubble db", description="Manage the store's schema.")
    p.add_argument("action", choices=["upgrade"], help="upgrade: migrate to this version")
    p.add_argument("--db-url", help=settings.BY_NAME["db_url"].help)
    p.add_argument("--data-dir", help=settings.BY_NAME["data_dir"].help)
    args = p.parse_args(argv)
    values = settings.resolve({"db_url": args.db_url, "data_dir": args.data_dir})
    cfg = JobsConfig.from_settings(values)
    if not cfg.db_url:
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from bubble.jobs.migrate import upgrade

    engine = create_engine(cfg.database_url)
    shown = engine.url.render_as_string(hide_password=True)
    try:
        before, after = upgrade(engine)
    except SQLAlchemyError as err:
        raise UsageError(
            f"cannot upgrade {shown}: {err.__class__.__name__}: {err}",
            "check --db-url and that the database is reachable",
        ) from None
    finally:
        engine.dispose()
    print(f"bubble: {shown}: schema {before or 'empty'} -> {after}", flush=True)
    if before == "0001" and cfg.data_dir.is_dir():
        from bubble.jobs.legacy import import_files
        from bubble.jobs.store import Store

        store = Store(cfg.database_url)
        try:
            n = import_files(store, cfg.data_dir)
        finally:
            store.close()
        print(f"bubble: {n} files of old runs and uploads in {cfg.data_dir} copied into it")
    return 0
