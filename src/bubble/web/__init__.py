"""The web UI and API: a Flask app factory with one blueprint per concern.

`create_app(config)` builds the app and its orchestrator (`app.extensions["bubble"]`, a
`bubble.jobs.service.Jobs`); call `shutdown(app)` when done with it. The data dir is the
app's instance folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from bubble.jobs import settings
from bubble.jobs.model import JobsConfig
from bubble.jobs.service import Jobs

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

# Config keys and defaults come from the settings table (`bubble.jobs.settings`); config
# values left None are filled from the BUBBLE_* environment, then the table's default.
DEFAULTS: dict[str, Any] = settings.app_defaults() | {
    "DATA_DIR": None,
    "ALLOWED_HOSTS": list(LOOPBACK_HOSTS),  # Host header names answered; None = any
}


def _values(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The settings table's view of a Flask config: env fills what the config left None."""
    given = {s.name: cfg.get(s.config_key) for s in settings.SETTINGS}
    given = {k: v for k, v in given.items() if v is not None and v != settings.BY_NAME[k].default}
    return settings.resolve(given)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides `DEFAULTS` (keys as above)."""
    merged = dict(DEFAULTS) | dict(config or {})
    from bubble.web import asks, errors, leastpriv, pages, runs, security, seed, stream, uploads

    if merged["TOKEN"]:
        security.check_token(merged["TOKEN"])  # before anything is started
    values = _values(merged)
    values["default_timeout"] = min(values["default_timeout"], values["max_timeout"])
    jobs_cfg = JobsConfig.from_settings(values)
    merged.update({s.config_key: values[s.name] for s in settings.SETTINGS})
    merged["DEFAULT_TIMEOUT"] = jobs_cfg.default_timeout
    if merged["POLL_SECONDS"] is None:
        merged["POLL_SECONDS"] = 0.2 if jobs_cfg.queue_url else 1.0
    app = Flask(__name__, instance_path=str(jobs_cfg.data_dir))
    app.config.from_mapping(merged)
    # The multipart envelope adds a little to the file itself.
    app.config["MAX_CONTENT_LENGTH"] = jobs_cfg.max_upload + (64 << 10)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["bubble"] = Jobs(jobs_cfg)

    errors.init_app(app)
    security.init_app(app)
    for module in (pages, runs, asks, leastpriv, stream, uploads, seed):
        app.register_blueprint(module.bp)
    return app


def shutdown(app: Flask) -> None:
    """Stop the app's orchestrator: runs in flight are killed and recorded."""
    jobs = app.extensions.get("bubble")
    if isinstance(jobs, Jobs):
        jobs.shutdown()
