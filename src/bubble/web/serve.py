"""`bubble serve`: the web UI on waitress, a production WSGI server.

Loopback by default; any other address needs an access token (`--token` or
`BUBBLE_TOKEN`). Flags come from the settings table (`bubble.jobs.settings`).
`--port 0` picks a free port; the URL actually served is printed.
Each SSE client holds a server thread while it streams, hence the generous thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import signal
import sys
from types import FrameType

from bubble.errors import UsageError
from bubble.jobs import settings
from bubble.web import LOOPBACK_HOSTS, create_app, shutdown


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


def main(argv: list[str]) -> int:
    """Run the server until interrupted. Returns the exit status."""
    args = _parser().parse_args(argv)
    values = settings.resolve(vars(args))
    host, token = values["host"], values["token"] or None
    if not is_loopback(host) and not token:
        raise UsageError(
            f"refusing to serve on {host} without an access token",
            "pass --token T (or set BUBBLE_TOKEN), or bind 127.0.0.1",
        )
    if values["workers"] is not None and values["workers"] < 1:
        raise UsageError("--workers must be at least 1", "e.g. --workers 2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = {s.config_key: values[s.name] for s in settings.SETTINGS if settings.SERVE in s.scope}
    config["TOKEN"] = token
    config["ALLOWED_HOSTS"] = _allowed_hosts(host, values["allow_host"])
    app = create_app(config)
    from waitress import create_server

    server = create_server(
        app,
        host=host,
        port=values["port"],
        threads=values["threads"],
        connection_limit=max(100, values["threads"] * 2),
        ident="bubble",
        clear_untrusted_proxy_headers=True,
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
