"""`bubble selftest`: run every escape probe on this machine and say what stopped it.

Prints which kernel features Bubble relies on are present, then one line per probe: blocked
(right errno, no effect seen from outside), logged (an event of the right category naming the
call) and continued (the probe ran on). Exits 1 if any probe escaped or went unlogged.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bubble.policy import Policy
from bubble.sandbox import _abi, landlock, netns
from bubble.sandbox._libc import syscall
from bubble.sandbox.escapes import ESCAPES, PRELUDE, Escape


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one probe showed."""

    escape: Escape
    blocked: bool
    logged: bool
    continued: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.blocked and self.logged and self.continued


def target_python() -> str:
    """An interpreter the target's user can run (as root the target is `nobody`, who cannot
    read interpreters installed under /root)."""
    if os.geteuid() == 0 and os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    return sys.executable


def _listener(kind: str | None) -> socket.socket | None:
    if kind is None:
        return None
    family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    sock.bind(("::1" if kind == "tcp6" else "127.0.0.1", 0))
    if kind != "udp":
        sock.listen(4)
    sock.settimeout(0.2)
    return sock


def _got_traffic(sock: socket.socket) -> bool:
    try:
        if sock.type == socket.SOCK_DGRAM:
            sock.recv(16)
        else:
            sock.accept()[0].close()
    except TimeoutError:
        return False
    return True


def _workdir(escape: Escape) -> Path:
    work = Path(tempfile.mkdtemp(prefix="bubble-selftest-"))
    if "f" in escape.setup:
        (work / "f").write_text("orig")
    if "d" in escape.setup:
        (work / "d").mkdir()
    if "s" in escape.setup:  # a named socket that exists (nobody listens: the name is enough)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(work / "sock"))
    os.chmod(work, 0o777)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (work, *work.iterdir()):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return work


def run_escape(escape: Escape, python: str) -> Outcome:
    """Run one probe under `bubble run` and judge it."""
    work = _workdir(escape)
    listener = _listener(escape.listener)
    port = str(listener.getsockname()[1]) if listener else "0"
    before = {p.name: p.stat().st_mode for p in work.iterdir()}
    try:
        with tempfile.NamedTemporaryFile("r", suffix=".ndjson") as ev:
            cmd = [
                sys.executable,
                "-m",
                "bubble",
                "run",
                "--events",
                ev.name,
                *escape.flags,
                "--",
                python,
                "-I",
                "-c",
                PRELUDE + escape.code,
                str(work),
                port,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            events = [json.loads(line) for line in Path(ev.name).read_text().splitlines()]
        lines = proc.stdout.splitlines()
        result = next((x.split()[1] for x in lines if x.startswith("RESULT ")), "none")
        effect = bool(escape.effect and (work / escape.effect).exists())
        changed = {p.name: p.stat().st_mode for p in work.iterdir() if p.name != "x"} != {
            k: v for k, v in before.items() if k != "x"
        }
        traffic = bool(listener and _got_traffic(listener))
        blocked = result == escape.errno and not effect and not changed and not traffic
        logged = any(
            e.get("category") == escape.category and e.get("syscall") == escape.syscall
            for e in events
        )
        detail = (
            f"errno={result}"
            + (" EFFECT-SEEN" if effect or changed else "")
            + (" TRAFFIC" if traffic else "")
        )
        return Outcome(escape, blocked, logged, "ALIVE" in lines, detail)
    finally:
        if listener:
            listener.close()
        shutil.rmtree(work, ignore_errors=True)


def features() -> dict[str, str]:
    """Kernel features Bubble uses, as seen now."""
    out: dict[str, str] = {}
    buf = ctypes.create_string_buffer((0x7FC00000).to_bytes(4, "little"), 4)  # RET_USER_NOTIF
    try:
        syscall(_abi.NR_SECCOMP, _abi.SECCOMP_GET_ACTION_AVAIL, 0, ctypes.addressof(buf))
        out["USER_NOTIF"] = "yes"
    except OSError as err:
        out["USER_NOTIF"] = f"no ({err.strerror})"
    release = os.uname().release
    version = tuple(int(x) for x in release.split("-")[0].split(".")[:2])
    for name, first in (
        ("CONTINUE", (5, 5)),
        ("ADDFD with SEND", (5, 14)),
        ("WAIT_KILLABLE_RECV", (5, 19)),
        ("SYNC_WAKE_UP", (6, 6)),
    ):
        out[name] = "yes" if version >= first else f"no (kernel {release} < {first[0]}.{first[1]})"
    abi = landlock.abi_version()
    out["Landlock"] = f"ABI {abi}" if abi else "no"
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
        out["user namespaces"] = "yes" if limit > 0 else "disabled"
    except OSError:
        out["user namespaces"] = "unknown"
    wall, notes = netns.plan(Policy())
    out["network wall"] = "network namespace" if wall else notes[0].split(":")[0]
    out["kernel"] = release
    return out


def main(argv: list[str]) -> int:
    if argv:
        sys.stderr.write("bubble selftest takes no arguments\n")
        return 125
    print("Kernel features")
    for name, value in features().items():
        print(f"  {name:<20} {value}")
    python = target_python()
    print(
        f"\nEscape probes (target interpreter {python}, "
        f"{'as nobody' if os.geteuid() == 0 else 'as this user'})"
    )
    print(f"  {'probe':<46} {'blocked':<8} {'logged':<7} {'continued':<10} detail")
    failed = 0
    for escape in ESCAPES:
        o = run_escape(escape, python)
        failed += not o.ok
        mark = {True: "yes", False: "NO"}
        print(
            f"  {escape.name:<46} {mark[o.blocked]:<8} {mark[o.logged]:<7} "
            f"{mark[o.continued]:<10} {o.detail}",
            flush=True,
        )
    print(f"\n{len(ESCAPES) - failed} of {len(ESCAPES)} probes blocked, logged and continued.")
    return 1 if failed else 0
