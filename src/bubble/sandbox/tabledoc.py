"""Render the syscall table as `docs/syscalls.md` (`python -m bubble.sandbox.tabledoc`).

A test compares the file with this output, so the docs cannot drift from the filter.
"""

from __future__ import annotations

import sys

from bubble.sandbox.syscalls import EXCLUDED, NET_NOTES, TABLE

_RULES = {
    "fs": "always notified",
    "sys": "always notified, EPERM",
    "enosys": "always notified, ENOSYS",
    "exec": "with --notify-exec",
    "socket": "see below",
    "socketpair": "AF_UNIX datagram pairs, --deny-net=1",
    "addr": "--deny-net=1 or --trace-net",
    "listen": "--deny-net=1",
    "sendto": "--deny-net=1; --trace-net with a destination (always with --peek-tx)",
    "msg": "--deny-net=1 or --trace-net",
    "ioctl": "TIOCSTI, TIOCLINUX; writing or argument-less 'f', 'v', 'X' ioctls",
    "seccomp": "a filter asking for a listener",
    "exit": "always (internal, no event)",
}


def _rule(rule: str) -> str:
    kind, _, arg = rule.partition(":")
    if kind == "open":
        return f"arg {arg} has a write/create/truncate/tmpfile bit"
    if kind == "signal":
        return f"arg {arg} is the supervisor, its group, or -1"
    if kind == "pid":
        return f"arg {arg} names another process (not 0)"
    return _RULES[kind]


def render() -> str:
    lines = [
        "# Mediated system calls (x86_64)",
        "",
        "Generated from `src/bubble/sandbox/syscalls.py` by `python -m bubble.sandbox.tabledoc`;",
        "a test fails when this file and the table differ. Categories: `fs` (denied under",
        "`--deny-fs=1`, logged as `fs.write` under `--deny-fs=0`), `net` (`--deny-net`,",
        "`--trace-net`), `exec` (`--notify-exec`), `sys` (always denied), `internal`.",
        "",
        f"{len(TABLE)} rows.",
        "",
        "| syscall | nr | category | arguments | notified when | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in TABLE:
        args = " ".join(row.args) or "none"
        cells = (f"`{row.name}`", str(row.nr), row.category, args, _rule(row.rule), row.note)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Network under `--deny-net=1`",
        "",
        NET_NOTES,
        "",
        "## State-changing calls deliberately not mediated",
        "",
        "| syscall | reason |",
        "| --- | --- |",
    ]
    lines += [f"| `{name}` | {reason} |" for name, reason in sorted(EXCLUDED.items())]
    lines += [
        "",
        "## Other ABIs",
        "",
        "i386 (`int 0x80`) and x32 system calls reach the supervisor through the filter's",
        "bad-arch action. Each is denied with EPERM and logged (`arch` field, category of",
        "the native call of the same name, `sys` otherwise); `exit`/`exit_group` continue so",
        "such a program can still end. Nothing is ever killed by policy.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
