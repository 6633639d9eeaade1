"""The orchestrator's side of the fork server (`bubble forkserver`, see its module).

`ForkServer` owns one fork-server process and starts launchers through it; `spawn` returns
None whenever the server is not ready (starting, restarting after it died, or refusing),
and the caller then starts a cold `python -m bubble run` as before. A run therefore never
waits for, nor fails because of, the fork server. This module never imports `sandbox`.
`python -m bubble.jobs.forkclient SOCKET -- RUN-ARGS` runs one launcher through a server
with this process's stdio (the test suites' fork-server mode, `BUBBLE_TEST_FORKSERVER`).
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


class Launched:
    """A launcher the fork server forked: the part of `Popen` the runner uses. It stays
    unreaped (its PID and group valid for kills) until `wait` has seen its status."""

    def __init__(self, conn: socket.socket, pid: int) -> None:
        self.conn = conn
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self.conn], [], [], 0)[0]:
            self._read_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self.conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(["bubble", "run"], timeout or 0)
            self._read_status()
        assert self.returncode is not None
        return self.returncode

    def _read_status(self) -> None:
        try:
            msg = self.conn.recv(4096)
        except OSError:
            msg = b""
        if msg:
            self.returncode = int(json.loads(msg)["status"])
        else:
            # The fork server died under the run: its launcher is an orphan now. End it as
            # the watchdog would, and report the kill.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.returncode = -signal.SIGKILL
        self.conn.close()  # the server reaps the launcher now


class ForkServer:
    """One `bubble forkserver` process, restarted when it has died."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.python = python
        self.env = env  # the server's own: never the orchestrator's secrets
        self.dir = Path(tempfile.mkdtemp(prefix="bubble-forkserver-"))  # 0700
        self.path = str(self.dir / "sock")
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._gone = threading.Event()  # the current server's stdout reached EOF: it died
        self._gone.set()
        self._pid: int | None = None
        self.starts = 0  # how often it was started (restarts included)
        self.forked = 0  # launchers it forked
        self.start()

    def start(self) -> None:
        """Start (or restart) the server; it is ready a little later, in the background."""
        with self._lock:
            if not self._gone.is_set():
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._ready = ready = threading.Event()
            self._gone = gone = threading.Event()
            self._proc = proc = subprocess.Popen(
                [self.python, "-m", "bubble", "forkserver", self.path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
            self.starts += 1

        def watch() -> None:
            # The server detaches (it is not below us); its stdout tells us it is ready and,
            # at EOF, that it died.
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if len(line) == 2 and line[0] == b"ready":
                self._pid = int(line[1])
                ready.set()
                proc.stdout.read()
            ready.clear()
            gone.set()
            proc.wait()

        threading.Thread(target=watch, name="forkserver-watch", daemon=True).start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    @property
    def pid(self) -> int | None:
        """The server's pid once it is ready."""
        return self._pid

    @property
    def alive(self) -> bool:
        return not self._gone.is_set()

    def spawn(
        self, args: list[str], env: dict[str, str], cwd: str, fds: list[int], extra: list[int]
    ) -> Launched | None:
        """Fork `bubble run ARGS` with `fds` as its 0, 1, 2 and then each number in `extra`
        (the same descriptors, by number). None: not ready, start cold instead."""
        if self._gone.is_set():
            self.start()
            return None
        if not self._ready.is_set():
            return None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            conn.connect(self.path)
            body = json.dumps({"args": args, "env": env, "cwd": cwd, "fds": extra}).encode()
            conn.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _ints(fds))])
            reply = conn.recv(4096)
            if not reply:
                raise ConnectionError("the fork server closed the connection")
            launched = Launched(conn, int(json.loads(reply)["pid"]))
            self.forked += 1
            return launched
        except (OSError, ValueError, KeyError):
            conn.close()
            self.start()  # a no-op if it still runs
            return None

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()  # EOF: it exits
            if not self._gone.wait(5) and self._pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
                self._gone.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def _ints(fds: list[int]) -> bytes:
    return array.array("i", fds).tobytes()


def main(argv: list[str]) -> int:
    """`forkclient SOCKET -- RUN-ARGS`: this process's stdio, env and cwd for one run;
    exits as the launcher did, and forwards SIGTERM, SIGINT and SIGHUP to it."""
    path, args = argv[0], argv[2:]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    conn.connect(path)
    body = json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd(), "fds": []})
    conn.sendmsg([body.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _ints([0, 1, 2]))])
    launched = Launched(conn, int(json.loads(conn.recv(4096))["pid"]))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: os.kill(launched.pid, n))
    status = launched.wait()
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
