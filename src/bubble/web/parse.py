"""The run request body (the seed's, plus `timeout`) -> a validated `RunRequest`.

Strict on purpose: an unknown key, a wrong type or an empty command is refused with a
message naming it, instead of being ignored and running something the caller did not mean.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from typing import Any

from bubble.errors import UsageError
from bubble.jobs.model import RunRequest
from bubble.policy import Policy
from bubble.web import words
from bubble.web.body import MAX_ARGV_BYTES
from bubble.web.errors import BadRequest

TOP_KEYS = frozenset(
    {
        "cmd",
        "permissions",
        "notify_exec",
        "pidns",
        "diagnose",
        "trace_net",
        "peek_tx",
        "uploaded_path",
        "upload_id",
        "interpreter",
        "args",
        "timeout",
        "ask",
        "ask_timeout",
    }
)
PERMISSION_KEYS = frozenset({"fs_read", "fs_write", "network"})
MAX_ARGS = 1024
MIN_TIMEOUT = 0.1  # seconds: less cannot even start the launcher
# Seconds a held call waits for the analyst (ask mode) before the launcher denies it: long
# enough to read a card and click, short enough that an unattended run moves on.
DEFAULT_ASK_TIMEOUT = 60.0
_UPLOAD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false", f'e.g. "{key}": true')
    return value


def _words(value: Any, key: str) -> list[str]:
    """A string (split like a shell would, without running one) or a list of strings.

    Sizes are checked before anything is split, so a huge value costs one `len`."""
    if value is None or value == "":
        return []
    too_long = BadRequest(f"{key} is longer than {MAX_ARGV_BYTES} bytes", "shorten it")
    if isinstance(value, str):
        if len(value) > MAX_ARGV_BYTES or len(value.encode()) > MAX_ARGV_BYTES:
            raise too_long
        try:
            found = words.split(value)
        except ValueError as err:
            raise BadRequest(
                f"{key} cannot be split into words: {err}", "balance the quotes"
            ) from None
    elif isinstance(value, list) and all(isinstance(w, str) for w in value):
        if len(value) > MAX_ARGS:
            raise BadRequest(f"{key} has more than {MAX_ARGS} words", "pass fewer arguments")
        if sum(len(w.encode()) + 1 for w in value) > MAX_ARGV_BYTES:
            raise too_long
        found = list(value)
    else:
        raise BadRequest(f"{key} must be a string or a list of strings", f'e.g. "{key}": "-v"')
    if any("\0" in w for w in found):
        raise BadRequest(f"{key} contains a NUL byte", "remove it")
    return found


def _timeout(body: Mapping[str, Any], default: float, cap: float, key: str = "timeout") -> float:
    value = body.get(key, default)
    if value is None:
        return default
    example = f'"{key}": 30'
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{key} must be a positive number of seconds", example)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{key} must be a finite number of seconds", f"at most {cap:g}")
    if not value > 0:
        raise BadRequest(f"{key} must be a positive number of seconds", example)
    if value > cap:  # never formatted: an int of 400 digits does not fit a float
        raise BadRequest(
            f"{key} exceeds this server's limit of {cap:g}s", f"ask for at most {cap:g} seconds"
        )
    if value < MIN_TIMEOUT:
        raise BadRequest(f"{key} must be at least {MIN_TIMEOUT:g} seconds", example)
    return float(value)


def _ask(body: Mapping[str, Any], max_timeout: float) -> dict[str, Any]:
    """Ask mode's policy fields: held calls wait up to `ask_timeout` for the analyst."""
    ask = _bool(body, "ask", False)
    if not ask:
        if body.get("ask_timeout") is not None:
            raise BadRequest("ask_timeout applies to ask mode only", 'add "ask": true')
        return {}
    # The launcher's own bound on a held call's wait is an hour (--decide-timeout).
    cap = min(max_timeout, 3600.0)
    wait = _timeout(body, min(DEFAULT_ASK_TIMEOUT, cap), cap, "ask_timeout")
    return {"ask": True, "decide_timeout": wait}


def _policy(body: Mapping[str, Any], max_timeout: float) -> Policy:
    perms = body.get("permissions", {})
    if perms is None:
        perms = {}
    if not isinstance(perms, dict):
        raise BadRequest("permissions must be an object", '"permissions": {"network": true}')
    unknown = sorted(set(perms) - PERMISSION_KEYS)
    if unknown:
        raise BadRequest(
            f"unknown permission {unknown[0]!r}",
            "permissions are: " + ", ".join(sorted(PERMISSION_KEYS)),
        )
    if not _bool(perms, "fs_read", True):
        raise BadRequest("filesystem reads cannot be denied", "drop fs_read or set it to true")
    peek = body.get("peek_tx", 0)
    if isinstance(peek, bool) or not isinstance(peek, int):
        raise BadRequest("peek_tx must be a whole number of bytes", '"peek_tx": 64')
    fs_write = perms.get("fs_write", False)
    if fs_write not in (True, False, "overlay"):
        raise BadRequest(
            'fs_write must be true, false or "overlay"',
            '"overlay" lets the program write into a throwaway layer; true writes to the host',
        )
    network = perms.get("network", False)
    if network not in (True, False, "sim"):
        raise BadRequest(
            'network must be true, false or "sim"',
            '"sim": a simulated internet inside the wall (DNS answers, a sinkhole records)',
        )
    try:
        return Policy(
            deny_fs=fs_write is not True,
            fs_overlay="" if fs_write == "overlay" else None,
            deny_net=network is not True,
            net_sim=network == "sim",
            notify_exec=_bool(body, "notify_exec", True),  # the seed's UI default
            pidns=_bool(body, "pidns", False),
            diagnose=_bool(body, "diagnose", False),
            trace_net=_bool(body, "trace_net", False),
            peek_tx=peek,
            **_ask(body, max_timeout),
        )
    except UsageError as err:
        raise BadRequest(err.message, err.hint) from None


def _upload_id(body: Mapping[str, Any]) -> str | None:
    given = [k for k in ("upload_id", "uploaded_path") if body.get(k) not in (None, "")]
    if not given:
        return None
    value = body[given[0]]
    if len(given) == 2 and body["upload_id"] != body["uploaded_path"]:
        raise BadRequest("upload_id and uploaded_path disagree", "send only one of them")
    if not isinstance(value, str) or not _UPLOAD_ID.match(value):
        raise BadRequest(
            f"{given[0]} is not one of our uploads",
            "upload the file first and pass the id it returns; host paths are not accepted",
        )
    return value


def parse_run(body: Mapping[str, Any], default_timeout: float, max_timeout: float) -> RunRequest:
    """Validate a run request body."""
    unknown = sorted(set(body) - TOP_KEYS)
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r}", "keys are: " + ", ".join(sorted(TOP_KEYS)))
    policy = _policy(body, max_timeout)
    timeout = _timeout(body, default_timeout, max_timeout)
    upload_id = _upload_id(body)
    cmd = _words(body.get("cmd"), "cmd")
    interpreter = _words(body.get("interpreter"), "interpreter")
    args = _words(body.get("args"), "args")
    if upload_id is not None and cmd:
        raise BadRequest("both cmd and an upload given", "send a command or an upload, not both")
    if upload_id is None:
        if not cmd:
            raise BadRequest("the command is empty", 'give "cmd", e.g. "/bin/echo hello"')
        if interpreter:
            raise BadRequest(
                "interpreter applies to uploads only", "put the interpreter in cmd itself"
            )
    argv = cmd + args
    # Shown and offered for re-runs as typed; argv is what runs.
    typed = body["cmd"].strip() if isinstance(body.get("cmd"), str) else None
    if typed is not None and args:
        extra = body["args"] if isinstance(body["args"], str) else shlex.join(args)
        typed = f"{typed} {extra.strip()}"
    if len(argv) + len(interpreter) > MAX_ARGS:
        raise BadRequest(f"more than {MAX_ARGS} arguments", "pass fewer arguments")
    if sum(len(w.encode()) + 1 for w in argv + interpreter) > MAX_ARGV_BYTES:
        raise BadRequest(f"the command is longer than {MAX_ARGV_BYTES} bytes", "shorten it")
    return RunRequest(
        argv=tuple(argv),
        policy=policy,
        timeout=timeout,
        upload_id=upload_id,
        interpreter=tuple(interpreter),
        command_line=typed[:4096] if typed else None,
    )
