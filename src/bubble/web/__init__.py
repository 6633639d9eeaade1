"""The web UI and API: a Flask app factory with one blueprint per concern.

`create_app(config)` builds the app and its orchestrator (`app.extensions["bubble"]`, a
`bubble.jobs.service.Jobs`); call `shutdown(app)` when done with it. The data dir is the
app's instance folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from bubble.jobs.model import JobsConfig, cpu_count
from bubble.jobs.service import Jobs

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

DEFAULTS: dict[str, Any] = {
    "DATA_DIR": None,  # default: $BUBBLE_DATA_DIR or ./instance
    "DATABASE_URL": None,  # default: SQLite file in the data dir ($BUBBLE_DB_URL)
    "WORKERS": None,  # runs at once (default: CPU count); the rest queue
    "DEFAULT_TIMEOUT": 8.0,  # the seed's watchdog, seconds
    "MAX_TIMEOUT": 300.0,  # the most a run may ask for
    "MAX_UPLOAD": 64 << 20,  # bytes
    "MAX_QUEUE": 1000,  # runs waiting for a worker
    "OUTPUT_CAP": 16 << 20,  # bytes of stdout (and of stderr) kept per run
    "BUBBLE_API": None,  # default: $BUBBLE_API; unset -> offline NDJSON sink
    "TOKEN": None,  # access token; required for a non-loopback bind
    "ALLOWED_HOSTS": list(LOOPBACK_HOSTS),  # Host header names answered; None = any
    "KEEPALIVE_SECONDS": 15.0,  # SSE comment when a stream is idle this long
    "POLL_SECONDS": 1.0,  # a waiting stream re-reads the store at least this often
    "SSE_BATCH": 1000,  # events per store read while catching up
    "FORK_SERVER": None,  # start runs through a fork server (default on; $BUBBLE_FORK_SERVER=0)
}


def _jobs_config(cfg: Mapping[str, Any]) -> JobsConfig:
    data_dir = cfg["DATA_DIR"] or os.environ.get("BUBBLE_DATA_DIR") or "instance"
    return JobsConfig(
        data_dir=Path(data_dir).resolve(),
        db_url=cfg["DATABASE_URL"] or os.environ.get("BUBBLE_DB_URL") or None,
        workers=int(cfg["WORKERS"] or cpu_count()),
        default_timeout=float(cfg["DEFAULT_TIMEOUT"]),
        max_timeout=float(cfg["MAX_TIMEOUT"]),
        output_cap=int(cfg["OUTPUT_CAP"]),
        max_upload=int(cfg["MAX_UPLOAD"]),
        max_queue=int(cfg["MAX_QUEUE"]),
        api_url=cfg["BUBBLE_API"] or os.environ.get("BUBBLE_API") or None,
        fork_server=_switch(cfg["FORK_SERVER"], os.environ.get("BUBBLE_FORK_SERVER", "1")),
    )


def _switch(value: object, env: str) -> bool:
    return bool(value) if value is not None else env not in ("0", "no", "off", "")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides `DEFAULTS` (keys as above)."""
    merged = dict(DEFAULTS) | dict(config or {})
    jobs_cfg = _jobs_config(merged)
    if jobs_cfg.default_timeout > jobs_cfg.max_timeout:
        merged["DEFAULT_TIMEOUT"] = jobs_cfg.max_timeout
        jobs_cfg = _jobs_config(merged)
    app = Flask(__name__, instance_path=str(jobs_cfg.data_dir))
    app.config.from_mapping(merged)
    # The multipart envelope adds a little to the file itself.
    app.config["MAX_CONTENT_LENGTH"] = jobs_cfg.max_upload + (64 << 10)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["bubble"] = Jobs(jobs_cfg)

    from bubble.web import errors, pages, runs, security, seed, stream, uploads

    errors.init_app(app)
    security.init_app(app)
    for module in (pages, runs, stream, uploads, seed):
        app.register_blueprint(module.bp)
    return app


def shutdown(app: Flask) -> None:
    """Stop the app's orchestrator: runs in flight are killed and recorded."""
    jobs = app.extensions.get("bubble")
    if isinstance(jobs, Jobs):
        jobs.shutdown()
