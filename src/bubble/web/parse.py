"""The run request body (the seed's, plus `timeout`) -> a validated `RunRequest`.

Strict on purpose: an unknown key, a wrong type or an empty command is refused with a
message naming it, instead of being ignored and running something the caller did not mean.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from bubble.jobs.model import RunRequest
from bubble.web import words
from bubble.web.body import MAX_ARGV_BYTES
from bubble.web.errors import BadRequest
from bubble.web.vocab import policy_from_body, seconds

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
        "policy",
    }
)
MAX_ARGS = 1024
_UPLOAD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


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
    policy = policy_from_body(body, max_timeout)
    timeout = seconds(body, default_timeout, max_timeout)
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
