"""One readable line per event, for a person at a terminal:

    DENIED  openat /tmp/x.txt O_WRONLY|O_CREAT (pid 5652)

A leaf (imports nothing of Bubble's) so that the launcher's event writer and the analysis
package can both use it. Target data is printed with control characters escaped: a path must
not be able to move the cursor or recolour the terminal.
"""

from __future__ import annotations

import os

_RESET = "\x1b[0m"
_COLOURS = {"DENIED": "\x1b[1;31m", "ALLOWED": "\x1b[33m", "SPAWN": "\x1b[36m"}
_COLOURS |= {
    "HELD": "\x1b[1;35m",
    "END": "\x1b[2m",
    "EXIT": "\x1b[1m",
    "NOTE": "\x1b[2m",
    "ERROR": "\x1b[1;31m",
}
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)}


def colour_wanted(fd: int) -> bool:
    """Colour on a terminal unless NO_COLOR is set (any value: no-color.org) or TERM=dumb."""
    if os.environ.get("NO_COLOR") is not None or os.environ.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(fd)
    except OSError:
        return False


def safe(value: object) -> str:
    """`value` as text with control characters (ESC, CR, newline …) escaped."""
    return str(value).translate(_CONTROL)


def _label(e: dict) -> str:
    etype = e.get("type")
    if etype == "policy.alert":
        return "DENIED"
    if etype == "policy.ask":
        return "HELD"
    if etype == "process.spawn":
        return "SPAWN"
    if etype == "process.end":
        return "END"
    if etype == "process.exit":
        return "EXIT"
    if etype == "run.error":
        return "ERROR"
    if etype == "sandbox.msg":
        return "NOTE"
    return "ALLOWED"


def _detail(e: dict) -> list[str]:
    etype = e.get("type")
    if etype == "process.spawn":
        argv = e["argv"] if isinstance(e.get("argv"), list) else [e.get("exe", "")]
        return [" ".join(safe(a) for a in argv)]
    if etype in ("process.end", "process.exit"):
        if e.get("signal") is not None:
            name = e.get("signal_name") or f"signal {e.get('signal')}"
            core = " (core dump refused)" if e.get("core_suppressed") else ""
            return [f"killed by {safe(name)}{core}"]
        return [f"exit {e.get('exit_code')}"]
    if etype in ("sandbox.msg", "run.error"):
        hint = f" (hint: {safe(e['hint'])})" if e.get("hint") else ""
        return [f"{safe(e.get('action', ''))}: {safe(e.get('message', ''))}{hint}"]
    parts = [safe(e.get("syscall") or etype)]
    for key in ("path", "path2", "flags"):
        if e.get(key):
            parts.append(("-> " if key == "path2" else "") + safe(e[key]))
    if e.get("mode") is not None and not e.get("flags"):
        parts.append(f"mode {e['mode']:o}" if isinstance(e["mode"], int) else safe(e["mode"]))
    if e.get("peer"):
        port = f":{e['port']}" if e.get("port") is not None else ""
        parts.append(f"{safe(e['peer'])}{port}")
    if e.get("dns_name"):
        parts.append(f"dns {safe(e['dns_name'])}")
    if e.get("denied") and e.get("denied") != "EPERM":
        parts.append(safe(e["denied"]))
    if e.get("detail"):
        parts.append(f"[{safe(e['detail'])}]")
    return parts


def line(e: dict, colour: bool = False) -> str:
    """The line for one event (a mapping as in the NDJSON), with its newline."""
    label = _label(e)
    pid = f" (pid {e['pid']})" if e.get("pid") is not None else ""
    head = f"{label:<7}"
    if colour:
        head = f"{_COLOURS[label]}{head}{_RESET}"
    return f"{head} {' '.join(_detail(e))}{pid}\n"
