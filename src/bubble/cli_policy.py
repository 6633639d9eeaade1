"""`bubble policy suggest` and `bubble diff`: the least-privilege loop at a terminal.

Event sources are NDJSON files (`-` for stdin) or, with `--api URL`, run ids of a Bubble
server, read page by page from `GET /api/runs/<id>/events?format=json`.
"""

from __future__ import annotations

import json
import os
import sys

from bubble.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUGGEST_USAGE = "usage: bubble policy suggest EVENTS.ndjson [--broad] [--api URL]"
DIFF_USAGE = (
    "usage: bubble diff A B [--format text|json] [--api URL]   (A, B: event files or run ids)"
)


def _options(
    args: list[str], flags: dict[str, bool], usage: str
) -> tuple[list[str], dict[str, str]]:
    """Positional arguments and `--flag[=value]` options; `flags` says which take a value."""
    pos: list[str] = []
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            raise UsageError("help requested", usage)
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in flags:
                raise UsageError(f"unknown flag {name}", usage)
            if flags[name] and not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{name} needs a value", usage)
                i += 1
                value = args[i]
            opts[name] = value if flags[name] else "1"
        else:
            pos.append(arg)
        i += 1
    return pos, opts


def read_events(source: str, api: str | None) -> list[dict[str, Any]]:
    """Events from an NDJSON file, stdin (`-`) or (with `api`) a run id on a server."""
    if api and not os.path.exists(source):
        return _from_api(api, source)
    try:
        if source == "-":
            return _parse(sys.stdin, source)
        with open(source, encoding="utf-8", errors="replace") as fh:
            return _parse(fh, source)
    except OSError as err:
        hint = "give an events file, or a run id with --api URL"
        raise UsageError(f"cannot read {source}: {err.strerror}", hint) from None


def _parse(fh: Any, source: str) -> list[dict[str, Any]]:
    events = []
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise UsageError(f"{source}:{n} is not JSON", "give NDJSON events") from None
        if isinstance(event, dict):
            events.append(event)
    return events


def _from_api(api: str, run_id: str) -> list[dict[str, Any]]:
    import urllib.error
    import urllib.parse
    import urllib.request

    events: list[dict[str, Any]] = []
    after = 0
    headers = {"Accept": "application/json"}
    token = os.environ.get("BUBBLE_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    while True:
        url = (
            f"{api.rstrip('/')}/api/runs/{urllib.parse.quote(run_id, safe='')}"
            f"/events?format=json&after={after}&limit=1000"
        )
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=30
            ) as r:
                page = json.load(r)
        except (urllib.error.URLError, ValueError, OSError) as err:
            raise UsageError(
                f"cannot read run {run_id} from {api}: {err}", "check --api and the id"
            ) from None
        events.extend(page.get("events", []))
        if page.get("done") or not page.get("events"):
            return events
        after = int(page.get("next_after", after))


def suggest_main(args: list[str]) -> int:
    from bubble.analysis.suggest import suggest, to_toml

    if args[:1] != ["suggest"]:
        raise UsageError("unknown policy command", SUGGEST_USAGE)
    pos, opts = _options(args[1:], {"--broad": False, "--api": True}, SUGGEST_USAGE)
    if len(pos) != 1:
        raise UsageError("give one events file (or run id)", SUGGEST_USAGE)
    events = read_events(pos[0], opts.get("--api"))
    sys.stdout.write(to_toml(suggest(events, allow_broad="--broad" in opts), pos[0]))
    return 0


def diff_main(args: list[str]) -> int:
    from bubble.analysis.diff import diff, to_text

    pos, opts = _options(args, {"--format": True, "--api": True}, DIFF_USAGE)
    if len(pos) != 2:
        raise UsageError("give two event files or run ids", DIFF_USAGE)
    fmt = opts.get("--format", "text")
    if fmt not in ("text", "json"):
        raise UsageError(f"--format {fmt} is not text or json", DIFF_USAGE)
    api = opts.get("--api")
    result = diff(read_events(pos[0], api), read_events(pos[1], api))
    if fmt == "json":
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
    else:
        sys.stdout.write(to_text(result, pos[0], pos[1]))
    return 0
