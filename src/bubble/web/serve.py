"""`bubble serve`: the web UI on waitress, a production WSGI server.

Loopback by default; any other address needs an access token (`--token` or
`BUBBLE_TOKEN`). `--port 0` picks a free port; the URL actually served is printed.
Each SSE client holds a server thread while it streams, hence the generous thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from types import FrameType

from bubble.errors import UsageError
from bubble.policy import parse_size
from bubble.web import LOOPBACK_HOSTS, create_app, shutdown


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bubble serve", description="Serve the Bubble web UI.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port (default 8090; 0 = any free)")
    p.add_argument("--data-dir", help="runs, uploads, database (default ./instance)")
    p.add_argument("--token", help="access token (default $BUBBLE_TOKEN)")
    p.add_argument("--allow-host", action="append", default=[], help="extra Host name")
    p.add_argument("--workers", type=int, help="runs at once (default: CPU count)")
    p.add_argument("--threads", type=int, default=64, help="HTTP threads (each SSE holds one)")
    p.add_argument("--default-timeout", type=float, default=8.0, help="seconds (default 8)")
    p.add_argument("--max-timeout", type=float, default=300.0, help="cap for a run's timeout")
    p.add_argument("--max-upload", default="64M", help="upload size limit (default 64M)")
    p.add_argument("--db-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    p.add_argument("--rules", action="append", default=[], help="folder of Sigma rules for reports")
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
    token = args.token or os.environ.get("BUBBLE_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise UsageError(
            f"refusing to serve on {args.host} without an access token",
            "pass --token T (or set BUBBLE_TOKEN), or bind 127.0.0.1",
        )
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1", "e.g. --workers 2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = {
        "DATA_DIR": args.data_dir,
        "DATABASE_URL": args.db_url,
        "WORKERS": args.workers,
        "DEFAULT_TIMEOUT": args.default_timeout,
        "MAX_TIMEOUT": args.max_timeout,
        "MAX_UPLOAD": parse_size("--max-upload", args.max_upload),
        "TOKEN": token,
        "ALLOWED_HOSTS": _allowed_hosts(args.host, args.allow_host),
        "RULES": args.rules or None,
    }
    app = create_app(config)
    from waitress import create_server

    server = create_server(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        connection_limit=max(100, args.threads * 2),
        ident="bubble",
        clear_untrusted_proxy_headers=True,
    )
    port = getattr(server, "effective_port", args.port)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    jobs = app.extensions["bubble"]
    print(
        f"bubble: serving http://{shown}:{port}/ (data {jobs.cfg.data_dir}, "
        f"{jobs.cfg.workers} runs at once)",
        flush=True,
    )
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
