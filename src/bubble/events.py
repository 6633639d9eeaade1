"""Events: frozen dataclasses built by name, serialised to NDJSON in exactly one place.

Every event line carries `seq` (1, 2, 3 ... per run, no gaps), `ts` (RFC 3339 UTC) and `type`;
the other fields are the dataclass's fields, omitted when `None`. `docs/events.md` documents
every type and field, and a test keeps the two in step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

try:
    from _json import encode_basestring as _quote  # the C escaper json.dumps itself uses
except ImportError:  # pragma: no cover - other Pythons
    from json.encoder import py_encode_basestring as _quote

# Event types.
SPAWN = "process.spawn"
EXIT = "process.exit"
ALERT = "policy.alert"
FS_WRITE = "fs.write"
FS_NOOP = "fs.noop"  # a mutation answered as the kernel would, changing nothing
ASK = "policy.ask"  # a held call, waiting for a decision helper or the analyst
ALLOWED = "policy.allow"  # a call the policy would deny, allowed by such a decision
NET_SOCKET = "net.socket"
NET_CONNECT = "net.connect"
NET_BIND = "net.bind"
NET_SEND = "net.send"
NET_PEEK = "net.tx.peek"
NET_DNS = "net.dns"  # --net-sim: a question our DNS server answered
NET_CAPTURE = "net.capture"  # --net-sim: what a connection or datagram carried
MSG = "sandbox.msg"
FS_DROP = "fs.drop"  # the layer's (--fs-overlay, one per path) or the orchestrator's summary
END = "process.end"
ERROR = "run.error"  # added by the orchestrator: the launcher could not run the program


@dataclass(frozen=True, slots=True, kw_only=True)
class Spawn:
    """The launcher started the target, or (with --notify-exec) a process called exec."""

    type: str = SPAWN
    pid: int
    exe: str
    argv: list[str] | None = None
    cwd: str | None = None
    exe_hex: str | None = None  # the exact bytes, when `exe` is not valid UTF-8
    argv_hex: list[str] | None = None  # every entry's bytes, when one is not valid UTF-8
    cwd_hex: str | None = None
    ppid: int | None = None
    syscall: str | None = None
    syscall_no: int | None = None
    action: str | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A mediated system call: a denial (`policy.alert`) or an allowed, observed call
    (`fs.write`, `net.*`). Context fields are present only where they apply."""

    type: str
    pid: int
    category: str
    syscall: str
    syscall_no: int
    arch: str | None = None
    reason: str | None = None
    denied: str | None = None
    decision: str | None = None
    path: str | None = None
    path2: str | None = None
    path_hex: str | None = None  # the exact bytes, when `path` is not valid UTF-8
    path2_hex: str | None = None
    flags: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    fd: int | None = None
    peer: str | None = None
    port: int | None = None
    family: int | None = None
    family_name: str | None = None
    domain: str | None = None
    sock_type: str | None = None
    proto: int | None = None
    bytes: int | None = None
    hex: str | None = None
    dns_name: str | None = None
    dns_type: str | None = None
    dns_queries: list[str] | None = None
    detail: str | None = None
    scope: str | None = None  # the write scope that allowed it
    decided_by: str | None = None  # who decided a held call: helper | analyst
    ret: int | None = None  # EMULATE_RET: the value the call returned without running
    # An allowed call the supervisor carried out: 0, or the errno name it failed with.
    result: int | str | None = None
    ask_timeout_s: float | None = None  # policy.ask: denied when unanswered this long


@dataclass(frozen=True, slots=True, kw_only=True)
class Dns:
    """--net-sim: our DNS server answered a question (`answer` "" when it had none)."""

    type: str = NET_DNS
    dns_name: str
    dns_type: str
    answer: str
    proto: str  # udp | tcp
    peer: str | None = None  # the server address the target asked
    pid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Capture:
    """--net-sim: one TCP connection or UDP datagram the sinkhole received, with what it
    recognised in the payload. `sha256`/`artifact` name the kept payload (up to the bound)."""

    type: str = NET_CAPTURE
    peer: str
    port: int
    proto: str  # tcp | udp | tls (a terminated TLS connection: the bytes are the plaintext)
    bytes: int
    hex: str
    text: str
    dns_name: str | None = None  # the name our DNS gave `peer`
    http_request: str | None = None
    http_host: str | None = None
    http_method: str | None = None
    http_path: str | None = None
    tls_sni: str | None = None
    truncated: bool | None = None  # the payload reached the per-connection bound
    ended: str | None = None  # closed | idle | lifetime | limit | run-end
    sha256: str | None = None
    artifact: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Msg:
    """A note from the launcher: a degraded feature, a timeout, an error."""

    type: str = MSG
    action: str
    message: str
    pid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    """The last event of a run: how the target ended and what it used."""

    type: str = EXIT
    action: str = "launcher.end"
    pid: int
    exit_code: int | None
    signal: int | None
    duration_ms: int
    max_rss_kb: int
    timed_out: bool = False
    limit: str | None = None
    notes: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class End:
    """A process of the tree other than the root ended (the root gets `process.exit`)."""

    type: str = END
    pid: int
    ppid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    signal_name: str | None = None
    core_suppressed: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Drop:
    """What the run left behind, in one of two shapes (every field optional):

    - from the layer (--fs-overlay, the launcher): one event per changed path, with `path`,
      `change`, `kind` and what the layer shows of it (`size`, `sha256`, `mode`, ...);
    - from the orchestrator: one summary of the run's working directory, with `cwd`, `count`
      and the `files` / `modified` / `deleted` lists (each item: name, kind, size, sha256).
    """

    type: str = FS_DROP
    # The layer's shape: one path.
    path: str | None = None
    change: str | None = None  # created | modified | deleted | metadata | renamed
    kind: str | None = None  # file | dir | symlink | other
    size: int | None = None
    sha256: str | None = None
    mode: int | None = None
    path2: str | None = None  # renamed: where it came from
    target: str | None = None  # symlink: what it points to
    copy: str | None = None  # --fs-overlay=DIR: where the file was copied
    pid: int | None = None
    # The orchestrator's shape: the working directory's summary.
    cwd: str | None = None
    count: int | None = None
    files: list[dict[str, Any]] | None = None
    modified: list[dict[str, Any]] | None = None
    deleted: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """The launcher refused or failed to run the program (exit status 125-127): its message
    and the hint, on the events channel so a reader of events sees why nothing ran."""

    type: str = ERROR
    action: str
    message: str
    hint: str
    status: int | None = None


def exact(text: str) -> tuple[str, str | None]:
    """Text for an event from a path or argument read as bytes (decoded with
    surrogateescape): unchanged if it is valid UTF-8; otherwise each undecodable byte shown
    as `\\xNN`, and the exact bytes in hex beside it, since that text alone cannot be told
    from a name that really contains a backslash."""
    if text.isascii():
        return text, None
    try:
        text.encode("utf-8")
        return text, None
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace"), raw.hex()


def exact_list(texts: list[str]) -> tuple[list[str], list[str] | None]:
    """`exact` for a list (argv): the hex of every entry if any entry needs it."""
    if all(t.isascii() for t in texts):
        return texts, None
    shown = [exact(t) for t in texts]
    if all(h is None for _, h in shown):
        return texts, None
    return [t for t, _ in shown], [t.encode("utf-8", "surrogateescape").hex() for t in texts]


Event = Spawn | Call | Dns | Capture | Msg | Exit | End | Drop
EVENT_CLASSES: tuple[type, ...] = (Spawn, Call, Dns, Capture, Msg, Exit, End, Drop, Error)

_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in EVENT_CLASSES}
# Fields serialised even when None (null says "no exit code: killed by a signal").
_KEEP_NULL: dict[type, frozenset[str]] = {cls: frozenset() for cls in EVENT_CLASSES}
_KEEP_NULL[Exit] = frozenset({"exit_code", "signal"})


# The records the simulated internet hands the supervisor: type -> class. Checked field by
# field, because they are built from hostile traffic in another process.
RECORD_CLASSES: dict[str, type] = {NET_DNS: Dns, NET_CAPTURE: Capture, MSG: Msg}
# class -> field -> the one value type it takes ("int | None" -> "int"; annotations are text).
_RECORD_FIELDS = {
    cls: {f.name: str(f.type).split(" |")[0] for f in fields(cls)}
    for cls in RECORD_CLASSES.values()
}


def as_dict(event: Event | Error) -> dict[str, Any]:
    """An event as a mapping, `None` fields omitted as in `serialise`: for the orchestrator's
    sink (which numbers and stamps it) and for `from_record` in another process."""
    return {
        name: value
        for name in _FIELD_NAMES[type(event)]
        if (value := getattr(event, name)) is not None
    }


def from_record(record: object) -> Dns | Capture | Msg:
    """The typed event for a record; unknown types or keys and wrong value types are errors
    (ValueError), so a confused or compromised producer cannot forge other events."""
    if not isinstance(record, dict):
        raise ValueError("a record is a JSON object")
    cls = RECORD_CLASSES.get(str(record.get("type")))
    if cls is None:
        raise ValueError(f"unknown record type {record.get('type')!r}")
    kinds = _RECORD_FIELDS[cls]
    for key, value in record.items():
        want = kinds.get(key)
        if want is None:
            raise ValueError(f"{cls.__name__} has no field {key!r}")
        if type(value).__name__ != want:
            raise ValueError(f"{key}: expected {want}, got {type(value).__name__}")
    try:
        return cls(**record)
    except TypeError as err:  # a required field is missing
        raise ValueError(str(err)) from None


class Clock:
    """RFC 3339 UTC timestamps with milliseconds; the formatted second is cached."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1000):03d}Z"


def _json_value(value: object) -> str:
    kind = type(value)
    if kind is str:
        return _quote(value)  # type: ignore[arg-type]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and value == value and abs(value) != float("inf"):  # type: ignore[arg-type]
        return repr(value)
    if value is None:
        return "null"
    if kind is list:
        return "[" + ",".join(_json_value(v) for v in value) + "]"  # type: ignore[attr-defined]
    raise TypeError(f"event field of type {kind.__name__} cannot be serialised")


def serialise(event: Event, seq: int, ts: str) -> str:
    """One NDJSON line (with its newline). The only place events become text.

    Event fields are str, int, finite float, bool, None or lists of str, so the line is
    assembled directly, with the json module's own C string escaper: this runs once per
    notification and costs a fraction of json.dumps (whose import alone is a measurable share
    of start-up).
    """
    cls = type(event)
    keep = _KEEP_NULL[cls]
    parts = [f'{{"seq":{seq},"ts":"{ts}"']
    for name in _FIELD_NAMES[cls]:
        value = getattr(event, name)
        if value is not None or name in keep:
            parts.append(f',"{name}":{_json_value(value)}')
    parts.append("}\n")
    return "".join(parts)
