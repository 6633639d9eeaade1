"""Fixtures for the API tests: an app over a real store -- a SQLite file, and again a
database of the session's private PostgreSQL server -- its test client, the same app
behind waitress on a free loopback port, and a check that the sandbox engine runs."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bubble.web import shutdown
from tests.web.helpers import LiveServer, engine_problem, make_app
from tests.web.probe import box, listener  # noqa: F401 (fixtures)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """The store the app under test uses: None is the embedded SQLite file."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").fresh_url()


@pytest.fixture
def app(data_dir: Path, db_url: str | None) -> Iterator[Flask]:
    app = make_app(data_dir, DB_URL=db_url)
    yield app
    shutdown(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def live(data_dir: Path, db_url: str | None) -> Iterator[LiveServer]:
    server = LiveServer(make_app(data_dir, KEEPALIVE_SECONDS=0.5, DB_URL=db_url))
    yield server
    server.stop()


@functools.cache
def _engine() -> str | None:
    return engine_problem()


@pytest.fixture
def engine() -> None:
    """Skip (saying why) where the sandbox engine cannot run a program."""
    problem = _engine()
    if problem:
        pytest.skip(f"the sandbox engine does not run here: {problem}")
