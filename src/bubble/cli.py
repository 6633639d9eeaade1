"""`bubble` command line: `run` (the sandbox), `report`, `policy suggest`, `diff`, `serve` (the
web UI), `worker` (executes queued runs), `db upgrade` (schema migrations), `selftest`.

Kept light on purpose: start-up time is part of every run, so flags are parsed from the
policy's own table (no argparse) and each subcommand imports its layer only when called.
"""

from __future__ import annotations

import os
import sys

from bubble.errors import BubbleError, UsageError
from bubble.policy import FLAGS, Policy, convert

USAGE = """\
usage: bubble run [--deny-fs=1|0] [--deny-net=1|0] [--notify-exec] [--pidns] [--diagnose]
                  [--trace-net] [--peek-tx=N] [--net-sim [--captures DIR] [--http-body FILE]]
                  [--timeout S] [--memory SIZE] [--cpu S]
                  [--max-procs N] [--max-output SIZE] [--user NAME | --keep-root [--keep-caps]]
                  [--policy FILE] [--allow-write DIR]...
                  [--fs-overlay[=DIR] [--keep-layer] [--max-layer SIZE]]
                  [--events PATH|- | --events-fd N] [--events-format ndjson|text]
                  [--report PATH] -- PROG [ARGS...]
       bubble report EVENTS.ndjson [--format json|ecs|text] [--rules DIR]
       bubble serve [--host 127.0.0.1] [--port 8090] [--data-dir DIR] [--token-file F]
                    [--db-url URL] [--queue-url redis://...]   (all: bubble serve --help)
       bubble worker --queue-url redis://... --db-url URL [--name N] [--concurrency K]
       bubble db upgrade [--db-url URL | --data-dir DIR]
       bubble policy suggest EVENTS.ndjson [--broad] [--api URL]
       bubble diff A B [--format text|json] [--api URL]
       bubble selftest
       bubble forkserver SOCKET   (started by the orchestrator; see docs/web.md)
"""

_VALUE_KINDS = ("int", "seconds", "size", "str", "list")


# Flags with a value that are not policy fields: where things go, and the policy file.
_OWN_VALUES = (
    "--events",
    "--events-fd",
    "--policy",
    "--events-format",
    "--report",
    "--captures",
    "--http-body",
)


def _merged(old: object, items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*(old if isinstance(old, tuple) else ()), *items)))


class RunArgs:
    """The parsed `bubble run` command line."""

    def __init__(
        self,
        policy: Policy,
        argv: list[str],
        events: str | None,
        events_fd: int | None,
    ):
        self.policy = policy
        self.argv = argv
        self.events = events
        self.events_fd = events_fd
        self.events_format: str | None = None  # None: text at a terminal, NDJSON elsewhere
        self.report: str | None = None
        self.captures: str | None = None  # --net-sim's payloads
        self.http_body: str | None = None


def parse_run(args: list[str]) -> RunArgs:
    """Parse `bubble run` arguments. Raises UsageError naming the offending flag."""
    values: dict[str, object] = {}
    events: str | None = None
    events_fd: int | None = None
    own: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break  # the program; flags end here as in `env`
        flag, eq, text = arg.partition("=")
        if flag in ("-h", "--help"):
            raise UsageError("help requested", USAGE.rstrip())
        if flag in _OWN_VALUES or FLAGS.get(flag, ("", ""))[1] in _VALUE_KINDS:
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{flag} needs a value", f"write {flag}=VALUE")
                i += 1
                text = args[i]
            if flag == "--events":
                events = text
            elif flag == "--events-fd":
                events_fd = convert(flag, "int", text)
            elif flag == "--policy":
                from bubble import scopes

                for name, items in scopes.load(text).items():
                    values[name] = _merged(values.get(name), items)
            elif flag in _OWN_VALUES:
                own[flag] = text
            else:
                name, kind = FLAGS[flag]
                value = convert(flag, kind, text)
                values[name] = _merged(values.get(name), (value,)) if kind == "list" else value
        elif flag in FLAGS:
            name, kind = FLAGS[flag]
            if kind == "switch":
                if eq:
                    raise UsageError(f"{flag} takes no value", f"write just {flag}")
                values[name] = True
            elif kind == "optstr":
                if eq and not text:
                    raise UsageError(f"{flag}= has an empty value", f"write {flag} or {flag}=DIR")
                values[name] = os.path.abspath(text) if eq else ""
            else:  # "01"
                values[name] = convert(flag, kind, text) if eq else True
        else:
            raise UsageError(f"unknown flag {arg}", "see `bubble run --help` for the flags")
        i += 1
    argv = args[i:]
    if not argv:
        raise UsageError("no program given", "write: bubble run [FLAGS] -- PROG [ARGS...]")
    if events is not None and events_fd is not None:
        raise UsageError("--events and --events-fd both given", "choose one place for events")
    if events_fd is not None and events_fd < 0:
        raise UsageError(f"--events-fd {events_fd} is not a descriptor", "give a number >= 0")
    parsed = RunArgs(Policy(**values), argv, events, events_fd)  # type: ignore[arg-type]
    parsed.captures, parsed.http_body = own.get("--captures"), own.get("--http-body")
    if (parsed.captures or parsed.http_body) and not parsed.policy.net_sim:
        flag = "--captures" if parsed.captures else "--http-body"
        raise UsageError(f"{flag} is an option of --net-sim", "add --net-sim")
    fmt = own.get("--events-format")
    if fmt is not None and fmt not in ("ndjson", "text"):
        raise UsageError(f"--events-format {fmt}: unknown", "use ndjson or text")
    parsed.events_format = fmt
    parsed.report = own.get("--report")
    return parsed


def _sink(parsed: RunArgs) -> tuple[bool | None, int | None, int | None]:
    """(text: None for NDJSON, else colour?; fd for a copy of the NDJSON; fd for the summary).
    A terminal gets readable lines and the summary at the end; files, fds and pipes get
    NDJSON unless --events-format says otherwise."""
    from bubble.eventline import colour_wanted

    fd = parsed.events_fd if parsed.events_fd is not None else 2
    at_terminal = False
    if parsed.events in (None, "-") or parsed.events_fd is not None:
        at_terminal = _is_open(fd) and os.isatty(fd)
    fmt = parsed.events_format or ("text" if at_terminal else "ndjson")
    text = None
    if fmt == "text":
        text = at_terminal and colour_wanted(fd)
    tee = None
    if parsed.report or text is not None:
        tee = os.memfd_create("bubble-events", os.MFD_CLOEXEC)
    return text, tee, fd if text is not None and at_terminal else None


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _run(args: list[str]) -> int:
    parsed = parse_run(args)
    from bubble.sandbox.launcher import launch

    text, tee, summary_fd = _sink(parsed)
    status = launch(
        parsed.policy,
        parsed.argv,
        events=parsed.events,
        events_fd=parsed.events_fd,
        sink=(text, tee),
        captures=parsed.captures,
        http_body=parsed.http_body,
    )
    if tee is not None:
        from bubble.analysis.cli import after_run

        after_run(f"/proc/self/fd/{tee}", parsed.report, summary_fd)
    # Everything is written and the tree is gone: skip the interpreter's teardown (~10 ms of
    # every run's wall time, measured in docs/benchmarks.md).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit status (see DESIGN §3)."""
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else ("", [])
    try:
        if command == "run":
            return _run(rest)
        if command == "report":
            from bubble.analysis.cli import main as report_main

            return report_main(rest)
        if command == "serve":
            from bubble.web.serve import main as serve_main

            return serve_main(rest)
        if command == "worker":
            from bubble.jobs.worker import main as worker_main

            return worker_main(rest)
        if command == "db":
            from bubble.jobs.dbcli import main as db_main

            return db_main(rest)
        if command == "policy":
            from bubble.cli_policy import suggest_main

            return suggest_main(rest)
        if command == "diff":
            from bubble.cli_policy import diff_main

            return diff_main(rest)
        if command == "forkserver":  # started by the orchestrator and workers
            from bubble.sandbox.forkserver import main as forkserver_main

            return forkserver_main(rest)
        if command == "selftest":
            from bubble.sandbox.selftest import main as selftest_main

            return selftest_main(rest)
        if command in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return 0
        if command in ("--version", "version"):
            from bubble import __version__

            print(f"bubble {__version__}")
            return 0
        raise UsageError(
            f"unknown command {command!r}" if command else "no command given",
            "use `bubble run -- PROG`, `bubble report EVENTS`, `bubble serve`, `bubble worker`, "
            "`bubble db upgrade` or `bubble selftest`",
        )
    except BubbleError as err:
        if err.message == "help requested":
            sys.stdout.write((err.hint or USAGE).rstrip() + "\n")
            return 0
        sys.stderr.write(f"bubble: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        sys.stderr.write(
            f"bubble: internal error: {err!r} (hint: rerun with BUBBLE_DEBUG=1 for a traceback, "
            "and report it)\n"
        )
        if os.environ.get("BUBBLE_DEBUG"):
            raise
        return 125
    except BrokenPipeError:
        # stdout closed by the reader (e.g. `| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
