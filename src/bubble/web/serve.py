"""`bubble serve`: the web UI on waitress, a production WSGI server.

Loopback by default; any other address needs an access token: `BUBBLE_TOKEN` or
`--token-file` (a `--token` flag works too but is visible to every user in `ps`).
`--port 0` picks a free port; the URL actually served is printed. Each SSE client holds a
server thread while it streams; `bubble.web.httpd` bounds what slow clients can take.
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
from bubble.web.httpd import WRITE_TIMEOUT, create_http_server
from bubble.web.security import check_token


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bubble serve", description="Serve the Bubble web UI.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port (default 8090; 0 = any free)")
    p.add_argument("--data-dir", help="runs, uploads, database (default ./instance)")
    p.add_argument("--token", help="access token (visible in ps; prefer $BUBBLE_TOKEN)")
    p.add_argument("--token-file", help="read the access token from this file's first line")
    p.add_argument("--allow-host", action="append", default=[], help="extra Host name")
    p.add_argument("--workers", type=int, help="runs at once (default: CPU count)")
    p.add_argument("--threads", type=int, default=64, help="HTTP threads (each SSE holds one)")
    p.add_argument(
        "--write-timeout",
        type=float,
        default=WRITE_TIMEOUT,
        help=f"close a client that reads nothing for this long (default {WRITE_TIMEOUT:g} s)",
    )
    p.add_argument("--default-timeout", type=float, default=8.0, help="seconds (default 8)")
    p.add_argument("--max-timeout", type=float, default=300.0, help="cap for a run's timeout")
    p.add_argument("--max-upload", default="64M", help="upload size limit (default 64M)")
    p.add_argument("--db-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
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


def _token(args: argparse.Namespace) -> str | None:
    """The access token from --token-file, --token or $BUBBLE_TOKEN (one source only)."""
    given = [name for name in ("token", "token_file") if getattr(args, name)]
    if len(given) > 1:
        raise UsageError("--token and --token-file both given", "pass only --token-file")
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(
                f"cannot read --token-file {args.token_file}: {err}", "give a readable file"
            ) from None
        if not token:
            raise UsageError(f"--token-file {args.token_file} is empty", "write the token in it")
        return token
    if args.token:
        print(
            "bubble: warning: --token is visible to every user in `ps`; "
            "prefer BUBBLE_TOKEN or --token-file",
            file=sys.stderr,
            flush=True,
        )
        return str(args.token)
    return os.environ.get("BUBBLE_TOKEN") or None


def main(argv: list[str]) -> int:
    """Run the server until interrupted. Returns the exit status."""
    args = _parser().parse_args(argv)
    token = _token(args)
    if not is_loopback(args.host) and not token:
        raise UsageError(
            f"refusing to serve on {args.host} without an access token",
            "set BUBBLE_TOKEN or pass --token-file FILE, or bind 127.0.0.1",
        )
    if token is not None:
        check_token(token)
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1", "e.g. --workers 2")
    if args.threads < 2 or not args.write_timeout > 0:
        raise UsageError(
            "--threads must be at least 2 and --write-timeout positive", "e.g. --threads 16"
        )
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
    }
    app = create_app(config)
    server = create_http_server(app, args.host, args.port, args.threads, args.write_timeout)
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
