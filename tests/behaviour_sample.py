"""The issue's done-when sample, shared by the CLI and web tests: it appends to
`…/.ssh/authorized_keys`, writes `/etc/cron.d/…`, `chmod 777 /etc/passwd`, removes a file
under /var/log, connects to a loopback listener and has a child die by SIGSEGV."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE = """#!/bin/sh
echo "ssh-ed25519 AAAA attacker" >> {home}/.ssh/authorized_keys
echo "* * * * * root /tmp/x" > {cron}
chmod 777 /etc/passwd
rm -f {log}
python3 -c "import socket,sys; s=socket.socket(); s.connect(('127.0.0.1', int(sys.argv[1])))" {port}
sh -c 'kill -SEGV $$'
exit 0
"""
ATTACK = {"T1098.004", "T1053.003", "T1222.002", "T1070.002"}


@dataclass
class Sample:
    script: Path
    log: Path
    cron: Path
    port: int
    accepted: list[int] = field(default_factory=list)


def all_processes(rep: dict) -> list[dict]:
    nodes, todo = [], list(rep["processes"])
    while todo:
        nodes.append(todo.pop())
        todo += nodes[-1]["children"]
    return nodes


@contextlib.contextmanager
def sample() -> Iterator[Sample]:
    """The script in a directory `nobody` can reach, a victim log file, and a loopback
    listener that counts connections; on exit, checks the host was left unchanged."""
    d = Path(tempfile.mkdtemp(prefix="bubble-sample-", dir="/tmp"))
    os.chmod(d, 0o755)
    log = Path("/var/log") / f"bubble-test-{os.getpid()}-{d.name}.log"
    log.write_text("keep me\n")
    cron = Path("/etc/cron.d") / f"bubble-test-{d.name}"
    passwd = os.stat("/etc/passwd").st_mode
    srv = socket.create_server(("127.0.0.1", 0))
    s = Sample(d / "sample.sh", log, cron, srv.getsockname()[1])

    def accept() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            s.accepted.append(1)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    s.script.write_text(SAMPLE.format(home=d, cron=cron, log=log, port=s.port))
    os.chmod(s.script, 0o755)
    try:
        yield s
        assert log.read_text() == "keep me\n"  # the denials were real
        assert os.stat("/etc/passwd").st_mode == passwd and not cron.exists()
    finally:
        srv.close()
        log.unlink(missing_ok=True)
        shutil.rmtree(d, ignore_errors=True)
