"""Private Redis and PostgreSQL servers for the tests: apt's binaries, started on loopback
in a temporary directory, stopped by their PID. One of each per test session; each test
gets its own database (a copy of a migrated template) or Redis database number."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# PostgreSQL refuses to run as root: as root, the cluster belongs to this user.
PG_USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes], sig: int = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """`redis-server` on 127.0.0.1:<free port>, no persistence."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is missing: `make test` installs it (apt)")
        self.dir = Path(tempfile.mkdtemp(prefix="bubble-redis-"))
        self.port = free_port()
        log = self.dir / "redis.log"
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.dir), "--logfile", str(log)]
        args += ["--databases", "64"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "redis-server", log)
        self._numbers = itertools.count(1)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def fresh_url(self) -> str:
        """A database number no other test used (flushed, to be sure)."""
        from redis import Redis

        url = self.url(next(self._numbers) % 64)
        with Redis.from_url(url) as client:
            client.flushdb()
        return url

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL 15 cluster of its own on 127.0.0.1:<free port>, trust auth for the
    loopback test user. Durability is off for tests (creating databases is then cheap);
    `durable=True` keeps the defaults, for benchmarks."""

    def __init__(self, durable: bool = False) -> None:
        if not (PG_BIN / "postgres").exists():
            raise RuntimeError("PostgreSQL 15 is missing: `make test` installs it (apt)")
        self.dir = Path(tempfile.mkdtemp(prefix="bubble-pg-"))
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        as_root = os.geteuid() == 0
        self.user = PG_USER if as_root else pwd.getpwuid(os.geteuid()).pw_name
        run_as = {"user": PG_USER} if as_root else {}
        if as_root:
            shutil.chown(self.dir, PG_USER)
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "bubble", "-A", "trust"],
            check=True,
            capture_output=True,
            **run_as,  # type: ignore[arg-type]
        )
        log = self.dir / "postgres.log"
        opts = ["-p", str(self.port), "-h", "127.0.0.1"]
        if not durable:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            opts += ["-c", "full_page_writes=off"]
        opts += ["-c", "max_connections=300", "-c", f"unix_socket_directories={self.dir}"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(self.data), *opts],
                stdout=out,
                stderr=subprocess.STDOUT,
                **run_as,  # type: ignore[arg-type]
            )
        _wait_port(self.port, self.proc, "postgres", log)
        self._numbers = itertools.count(1)
        self._template: str | None = None

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://bubble@127.0.0.1:{self.port}/{db}"

    def _admin(self, sql: str) -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=bubble dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)

    def fresh_url(self, migrated: bool = True) -> str:
        """A new, empty database; `migrated`: a copy of one at the current schema."""
        name = f"t{next(self._numbers)}"
        if not migrated:
            self._admin(f"CREATE DATABASE {name}")
            return self.url(name)
        if self._template is None:
            self._template = "tpl"
            self._admin("CREATE DATABASE tpl")
            from bubble.jobs.store import Store

            Store(self.url("tpl")).close()
        self._admin(f"CREATE DATABASE {name} TEMPLATE {self._template}")
        return self.url(name)

    def stop(self) -> None:
        _stop(self.proc, 2)  # SIGINT: PostgreSQL's fast shutdown
        shutil.rmtree(self.dir, ignore_errors=True)
