"""`bubble serve`: the web UI on waitress, a production WSGI server.

Loopback by default; any other address needs an access token: `BUBBLE_TOKEN` or
`--token-file` (a `--token` flag works too but is visible to every user in `ps`). Flags come
from the settings table (`bubble.jobs.settings`). `--port 0` picks a free port; the URL
actually served is printed. Each SSE client holds a server thread while it streams;
`bubble.web.httpd` bounds what slow clients can take.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import signal
import sys
from types import FrameType
from typing import Any

from bubble.errors import UsageError
from bubble.jobs import settings
from bubble.web import LOOPBACK_HOSTS, create_app, shutdown
from bubble.web.httpd import create_http_server
from bubble.web.security import check_token


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bubble serve", description="Serve the Bubble web UI.")
    settings.add_arguments(p, settings.SERVE)
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _allowed_hosts(host: str, extra: list[str]) -> list[str] | None:
    if host in ("0.0.0.0", "::", ""):
        return None  # any name may reach us; the token is the guard
    return [*LOOPBACK_HOSTS, host.strip("[]"), *extra]


def _on_sigterm(_signo: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _token(flag: str | None, values: dict[str, Any]) -> str | None:
    """The access token from --token-file, --token or $BUBBLE_TOKEN (one source only)."""
    path, token = values["token_file"], values["token"]
    if path and token:
        raise UsageError("a token and a token file both given", "pass only --token-file")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as err:
            hint = "give a readable file"
            raise UsageError(f"cannot read --token-file {path}: {err}", hint) from None
        if not token:
            raise UsageError(f"--token-file {path} is empty", "write the token in it")
        return str(token)
    if flag:
        print(
            "bubble: warning: --token is visible to every user in `ps`; "
            "prefer BUBBLE_TOKEN or --token-file",
            file=sys.stderr,
            flush=True,
        )
    return token or None


def main(argv: list[str]) -> int:
    """Run the server until interrupted. Returns the exit status."""
    args = _parser().parse_args(argv)
    values = settings.resolve(vars(args))
    host = values["host"]
    token = _token(args.token, values)
    if not is_loopback(host) and not token:
        raise UsageError(
            f"refusing to serve on {host} without an access token",
            "set BUBBLE_TOKEN or pass --token-file FILE, or bind 127.0.0.1",
        )
    if token is not None:
        check_token(token)
    if values["workers"] is not None and values["workers"] < 1:
        raise UsageError("--workers must be at least 1", "e.g. --workers 2")
    if values["threads"] < 2 or not values["write_timeout"] > 0:
        raise UsageError(
            "--threads must be at least 2 and --write-timeout positive", "e.g. --threads 16"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = {s.config_key: values[s.name] for s in settings.SETTINGS if settings.SERVE in s.scope}
    config["TOKEN"] = token
    config["ALLOWED_HOSTS"] = _allowed_hosts(host, values["allow_host"])
    app = create_app(config)
    server = create_http_server(
        app, host, values["port"], values["threads"], values["write_timeout"]
    )
    port = getattr(server, "effective_port", values["port"])
    shown = f"[{host}]" if ":" in host else host
    jobs = app.extensions["bubble"]
    where = "queued to workers" if jobs.cfg.queue_url else f"{jobs.cfg.workers} runs at once"
    print(f"bubble: serving http://{shown}:{port}/ (data {jobs.cfg.data_dir}, {where})", flush=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # Ctrl-C is a normal way to stop the server, not an error.
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        server.close()
        shutdown(app)
        print("bubble: stopped", file=sys.stderr, flush=True)
    return 0
