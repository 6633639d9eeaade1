"""`bubble report EVENTS.ndjson [--format json|ecs|text] [--rules DIR]`, and the report
`bubble run --report PATH` writes when a run ends (same module: one report everywhere)."""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

from bubble.errors import UsageError

FORMATS = ("json", "ecs", "text")
REPORT_USAGE = "bubble report EVENTS.ndjson [--format json|ecs|text] [--rules DIR]"


def rules_dirs_from_env() -> list[str]:
    """User rule folders from BUBBLE_RULES (colon-separated), the server's setting."""
    return [d for d in os.environ.get("BUBBLE_RULES", "").split(os.pathsep) if d]


def make(events: list[dict[str, Any]], rules_dirs: list[str], run: dict | None = None) -> dict:
    from bubble.analysis import report, signatures

    return report.build(events, ruleset=signatures.load(rules_dirs), run=run)


def write(out: IO[str], fmt: str, events: list[dict[str, Any]], rep: dict[str, Any]) -> None:
    if fmt == "json":
        json.dump(rep, out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "ecs":
        from bubble.analysis import ecs, report

        out.writelines(ecs.ndjson(report.clean(events), rep))
    else:
        from bubble.analysis import text

        out.write(text.summary(rep))


def parse(args: list[str]) -> tuple[str, str, list[str]]:
    path: str | None = None
    fmt = "json"
    rules: list[str] = []
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag in ("-h", "--help"):
            raise UsageError("help requested", REPORT_USAGE)
        if flag in ("--format", "--rules"):
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{flag} needs a value", f"write {flag}=VALUE")
                i += 1
                value = args[i]
            if flag == "--format":
                if value not in FORMATS:
                    raise UsageError(f"--format {value}: unknown", "use json, ecs or text")
                fmt = value
            else:
                rules.append(value)
        elif flag.startswith("-") and flag != "-":
            raise UsageError(f"unknown flag {flag}", f"usage: {REPORT_USAGE}")
        elif path is None:
            path = args[i]
        else:
            raise UsageError(f"unexpected argument {args[i]!r}", f"usage: {REPORT_USAGE}")
        i += 1
    if path is None:
        raise UsageError("no events file given", f"usage: {REPORT_USAGE}")
    return path, fmt, rules


def main(args: list[str]) -> int:
    from bubble.analysis import report

    path, fmt, rules = parse(args)
    try:
        events = list(report.read_ndjson("/dev/stdin" if path == "-" else path))
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror}", "give the events file of a run") from None
    rep = make(events, rules + rules_dirs_from_env())
    write(sys.stdout, fmt, events, rep)
    for bad in rep["rule_errors"]:
        sys.stderr.write(f"bubble: rule not loaded: {bad['file']}: {bad['reason']}\n")
    return 0


def after_run(events_path: str, report_path: str | None, summary_fd: int | None) -> None:
    """What `bubble run` does at the end: write `--report PATH` (JSON) and, at a terminal,
    print the text summary. Never changes the run's exit status: a failure is reported."""
    from bubble.analysis import report, text

    try:
        events = list(report.read_ndjson(events_path))
        rep = make(events, rules_dirs_from_env())
        if report_path:
            with open(report_path, "w", encoding="utf-8") as fh:
                write(fh, "json", events, rep)
        if summary_fd is not None:
            os.write(summary_fd, ("\n" + text.summary(rep)).encode("utf-8", "replace"))
    except OSError as err:
        sys.stderr.write(f"bubble: cannot write the report: {err} (hint: check --report)\n")
    except Exception as err:  # noqa: BLE001 - the run's exit status must stay the target's
        sys.stderr.write(
            f"bubble: the behaviour report failed: {err!r} (hint: run `bubble report` on the "
            "events to see why, and report it)\n"
        )
