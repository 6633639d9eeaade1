"""Helpers for the engine's robustness, privilege, lifecycle and real-program tests.

Everything here runs real processes: `bubble run` as a subprocess (sometimes long-lived, to
signal it), the same command natively as the target's user (to compare behaviour), a loopback
HTTP listener that counts what reaches it, and /proc look-ups that check from outside which
processes are still alive.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AS_ROOT, ROOT, target_ids

needs_root = pytest.mark.skipif(not AS_ROOT, reason="needs root: the launcher must drop privileges")

# Debian's interpreter: the target runs as `nobody` when tests run as root and cannot read the
# pyenv/venv interpreters under /root; the non-root launcher also runs with it (stdlib only).
SYSTEM_PYTHON = "/usr/bin/python3"
SRC = str(ROOT / "src")


def result_line(stdout: str, prefix: str = "RESULT") -> str:
    """The probe's first line starting with `prefix`."""
    return next(line for line in stdout.splitlines() if line.startswith(prefix))


def parse_events(text: str) -> list[dict]:
    """NDJSON events, checked for the contract every run must keep: seq 1, 2, 3... and
    process.exit last."""
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "seq must be contiguous"
    assert events and events[-1]["type"] == "process.exit", events[-3:]
    return events


def events_in_stderr(stderr: str) -> tuple[list[dict], str]:
    """Split stderr shared by events (`--events -`) and the target: (events, other lines)."""
    events, other = [], []
    for line in stderr.splitlines():
        (events if line.startswith('{"seq":') else other).append(line)
    return parse_events("\n".join(events)), "\n".join(other)


def bubble_cmd(argv: list[str], flags: list[str] = (), events: str | None = None) -> list[str]:
    """The `bubble run` command line, with the test's interpreter (bubble is installed in it)."""
    ev = ["--events", events] if events else []
    return [sys.executable, "-m", "bubble", "run", *ev, *flags, "--", *argv]


def nobody_cmd(args: list[str]) -> list[str]:
    """`python -m bubble ARGS` launched as `nobody`, the way a non-root operator runs it."""
    return [
        "runuser",
        "-u",
        "nobody",
        "--",
        "env",
        f"PYTHONPATH={SRC}",
        SYSTEM_PYTHON,
        "-m",
        "bubble",
        *args,
    ]


def native(
    argv: list[str],
    cwd: str | None = None,
    env: dict | None = None,
    input: str | None = None,
    timeout: float = 30,
    as_target_user: bool = True,
) -> subprocess.CompletedProcess:
    """Run `argv` without Bubble for a side-by-side check: as the user the target runs as, or
    (`as_target_user=False`) as ourselves, when the program must be able to reopen its stdio
    pipes, which belong to us."""
    uid, gid = target_ids()
    drop = AS_ROOT and as_target_user
    extra = {"user": uid, "group": gid, "extra_groups": []} if drop else {}
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        input=input,
        timeout=timeout,
        **extra,
    )


# --- processes seen from outside -----------------------------------------------------------
def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()  # comm may hold spaces and parentheses


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


def descendants(root: int, live_only: bool = True) -> list[int]:
    """Every process below `root` (only the live ones unless `live_only` is False), found
    through the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat(int(name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return [p for p in out if alive(p)] if live_only else out


def read_until(stream, marker: str, limit: int = 100) -> list[str]:
    """Lines read from a text stream up to and including the first one containing `marker`
    (a gate on the target's progress instead of a sleep)."""
    lines = []
    for _ in range(limit):
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never came; got {lines}")


# --- a loopback HTTP listener --------------------------------------------------------------
class HttpListener:
    """A one-page HTTP server on 127.0.0.1 that counts TCP connections and requests."""

    def __init__(self) -> None:
        owner = self
        self.connections = 0
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                owner.requests.append(self.path)
                body = b"hello from the listener\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass  # keep test output clean

        class Server(http.server.ThreadingHTTPServer):
            def verify_request(self, request, client_address) -> bool:
                owner.connections += 1  # counted at accept time, before any byte is read
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_listener() -> Iterator[HttpListener]:
    listener = HttpListener()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    """A private events file (only the launcher, which opens it before dropping privileges,
    writes it)."""
    return tmp_path / "events.ndjson"


def program_env(home: Path | str) -> dict[str, str]:
    """A small, fixed environment so native and sandboxed runs see the same one (HOME points
    at a directory the target's user can use)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
