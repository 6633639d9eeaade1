"""Every server and worker option, once: flag, `BUBBLE_*` variable, app config key, default.

`bubble serve` and `bubble worker` build their argument parsers from this table,
`create_app` takes its defaults from it, and `docs/settings.md` is generated from it (a
test keeps them equal). Precedence: flag, then environment, then default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bubble.errors import UsageError
from bubble.policy import parse_size

SERVE = "serve"
WORKER = "worker"
BOTH = (SERVE, WORKER)


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # flag --name-with-dashes, config key NAME, env BUBBLE_NAME (unless given)
    kind: str  # str | int | float | size | list (comma-separated) | paths (colon-separated)
    default: Any
    help: str
    scope: tuple[str, ...] = BOTH
    env: str | None = ""  # "" -> BUBBLE_<NAME>; None -> no variable
    flag: bool = True  # False: app config / environment only
    key: str = ""  # app config key when it differs from NAME

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_name(self) -> str | None:
        return None if self.env is None else self.env or "BUBBLE_" + self.name.upper()

    @property
    def config_key(self) -> str:
        return self.key or self.name.upper()


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("host", "str", "127.0.0.1", "address to bind; another than loopback needs a token", (SERVE,), env=None),
    Setting("port", "int", 8090, "port (0 = any free one; the URL served is printed)", (SERVE,), env=None),
    Setting("data_dir", "str", "instance", "SQLite database (unless --db-url) and run working directories"),
    Setting("db_url", "str", None, "SQLAlchemy URL of the store, e.g. postgresql+psycopg://u:p@h/db (default: SQLite in the data dir)"),
    Setting("queue_url", "str", None, "Redis URL of the run queue, e.g. redis://h:6379/0 (serve: none = run in-process)"),
    Setting("token", "str", None, "access token the web API requires (required off loopback; a flag is visible in ps: prefer the variable or --token-file)", (SERVE,)),
    Setting("token_file", "str", None, "read the access token from this file's first line", (SERVE,)),
    Setting("write_timeout", "float", 30.0, "close a client that reads nothing for this long (seconds)", (SERVE,)),
    Setting("allow_host", "list", [], "extra Host header name answered (repeatable)", (SERVE,), env=None),
    Setting("threads", "int", 64, "HTTP threads (each live stream holds one)", (SERVE,)),
    Setting("workers", "int", None, "in-process queue: runs at once (default: CPU count)", (SERVE,)),
    Setting("concurrency", "int", 1, "runs this worker executes at once (one RQ worker process each)", (WORKER,)),
    Setting("name", "str", None, "this worker's name, recorded on each run (default: host:pid)", (WORKER,)),
    Setting("default_timeout", "float", 8.0, "seconds a run gets when it asks for none", (SERVE,)),
    Setting("max_timeout", "float", 300.0, "the most seconds a run may ask for", (SERVE,)),
    Setting("max_upload", "size", 64 << 20, "largest upload accepted (stored in the database)", (SERVE,)),
    Setting("max_queue", "int", 1000, "runs that may wait for an executor", (SERVE,)),
    Setting("output_cap", "size", 16 << 20, "bytes of stdout (and of stderr) kept per run"),
    Setting("heartbeat", "float", 2.0, "seconds between an executing run's heartbeats", (WORKER,)),
    Setting("stale_after", "float", 20.0, "a running run without a heartbeat this long failed (its worker died)"),
    Setting("fork_server", "int", 1, "1: launchers forked by a pre-imported fork server (cold while it starts); 0: `python -m bubble run` per run"),
    Setting("rules", "paths", [], "a folder of your own Sigma rules for behaviour reports (repeatable)", key="RULES"),
    Setting("api_url", "str", None, "BUBBLE_API endpoint runs are forwarded to (unset: offline NDJSON sink)", env="BUBBLE_API", key="BUBBLE_API"),
    Setting("keepalive_seconds", "float", 15.0, "SSE comment when a stream is idle this long", (SERVE,), flag=False),
    Setting("poll_seconds", "float", None, "a waiting stream re-reads the store at least this often (default 1, 0.2 with a queue)", (SERVE,), flag=False),
    Setting("sse_batch", "int", 1000, "events per store read while a stream catches up", (SERVE,), flag=False),
    Setting("sse_max_streams", "int", None, "live streams at once, each holding a thread (default: from --threads)", (SERVE,), flag=False),
    Setting("sse_max_per_client", "int", 8, "live streams at once per client address (a run page opens 2)", (SERVE,), flag=False),
)
# fmt: on

BY_NAME = {s.name: s for s in SETTINGS}


def convert(setting: Setting, value: Any) -> Any:
    """A flag's or variable's text as the setting's type; UsageError naming it."""
    if value is None or not isinstance(value, str):
        return value
    try:
        if setting.kind == "int":
            return int(value)
        if setting.kind == "float":
            return float(value)
        if setting.kind == "size":
            return parse_size(setting.flag_name, value)
        if setting.kind == "list":
            return [v for v in value.split(",") if v]
        if setting.kind == "paths":  # like PATH: colon-separated
            return [v for v in value.split(os.pathsep) if v]
    except ValueError:
        raise UsageError(
            f"{setting.flag_name} (or {setting.env_name}) must be a number, not {value!r}",
            f"e.g. {setting.flag_name} {setting.default}",
        ) from None
    return value


def add_arguments(parser: argparse.ArgumentParser, scope: str) -> None:
    """The table's flags for `scope`; unset flags stay None so the environment can fill them."""
    for s in SETTINGS:
        if scope not in s.scope or not s.flag:
            continue
        if s.kind in ("list", "paths"):
            parser.add_argument(s.flag_name, dest=s.name, action="append", help=s.help)
        else:
            shown = "" if s.default in (None, []) else f" (default {s.default})"
            parser.add_argument(s.flag_name, dest=s.name, help=s.help + shown)


def resolve(
    given: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """{name: value} for every setting: given (not None), else environment, else default."""
    given = given or {}
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for s in SETTINGS:
        value = given.get(s.name)
        if value is None and s.env_name and environ.get(s.env_name):
            value = environ[s.env_name]
        out[s.name] = s.default if value is None else convert(s, value)
    return out


def app_defaults() -> dict[str, Any]:
    """`create_app`'s config defaults, keyed as Flask config."""
    return {s.config_key: s.default for s in SETTINGS if SERVE in s.scope}


def markdown() -> str:
    """docs/settings.md, from the table."""
    lines = [
        "# Settings",
        "",
        "Generated from `src/bubble/jobs/settings.py` (a test keeps this page equal to it).",
        "A flag wins over its environment variable, which wins over the default.",
        "",
        "| flag | environment | used by | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        flag = f"`{s.flag_name}`" if s.flag else f"(config `{s.config_key}`)"
        env = f"`{s.env_name}`" if s.env_name else ""
        default = "" if s.default in (None, []) else f"`{s.default}`"
        lines.append(f"| {flag} | {env} | {', '.join(s.scope)} | {default} | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m bubble.jobs.settings > docs/settings.md
    import sys

    sys.stdout.write(markdown())
