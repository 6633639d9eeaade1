"""Events: frozen dataclasses built by name, serialised to NDJSON in exactly one place.

Every event line carries `seq` (1, 2, 3 ... per run, no gaps), `ts` (RFC 3339 UTC) and `type`;
the other fields are the dataclass's fields, omitted when `None`. `docs/events.md` documents
every type and field, and a test keeps the two in step.

The classes are dataclasses (`dataclasses.fields`/`replace` work on them; mypy reads them as
frozen and keyword-only), but their methods are `_Frozen`'s, written once, instead of the
ones `@dataclass` generates per class. Measured on this machine (Python 3.11): building a
`policy.alert` went from 5.9 to ~1.4 µs, serialising it from 5.0 to ~2.5 µs (an instance
keeps only the fields it was given in its `__dict__`, the class holds the `None` defaults, so
neither `__init__` nor `serialise` walks the 36 fields of `Call`), and importing this module
from ~13 to ~3 ms (no `exec` of generated methods: 9 classes x 6 methods).
"""

from __future__ import annotations

import time
from dataclasses import MISSING, FrozenInstanceError, dataclass, fields

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    _T = TypeVar("_T")

try:
    from _json import encode_basestring as _quote  # the C escaper json.dumps itself uses
except ImportError:  # pragma: no cover - other Pythons
    from json.encoder import py_encode_basestring as _quote


class _Frozen:
    """The methods every event class shares: a keyword-only `__init__` that checks names
    like the generated one (unknown or missing fields are a TypeError), and frozenness."""

    _names: frozenset[str]
    _required: frozenset[str]
    _defaults: dict[str, Any]
    _fields: tuple[str, ...]

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        if not values.keys() <= cls._names:
            unknown = sorted(values.keys() - cls._names)
            raise TypeError(f"{cls.__name__}() got unexpected keyword argument(s) {unknown}")
        if not cls._required <= values.keys():
            missing = sorted(cls._required - values.keys())
            raise TypeError(f"{cls.__name__}() missing required keyword argument(s) {missing}")
        # Unset fields read the class's default (None, mostly); non-None defaults are
        # copied in so that the instance's dict holds every field serialise must write.
        object.__setattr__(self, "__dict__", {**cls._defaults, **values})

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({shown})"


if TYPE_CHECKING:

    @dataclass_transform(frozen_default=True, kw_only_default=True)
    def _event(cls: type[_T]) -> type[_T]: ...

else:

    def _event(cls):
        """Make `cls` (a subclass of _Frozen) a dataclass without generated methods."""
        cls = dataclass(init=False, repr=False, eq=False)(cls)
        found = fields(cls)
        if any(f.default is MISSING and f.default_factory is not MISSING for f in found):
            raise TypeError(f"{cls.__name__}: events take no default factories")
        cls._fields = tuple(f.name for f in found)
        cls._names = frozenset(cls._fields)
        cls._required = frozenset(f.name for f in found if f.default is MISSING)
        cls._defaults = {
            f.name: f.default for f in found if f.default is not MISSING and f.default is not None
        }
        return cls


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


@_event
class Spawn(_Frozen):
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


@_event
class Call(_Frozen):
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


@_event
class Dns(_Frozen):
    """--net-sim: our DNS server answered a question (`answer` "" when it had none)."""

    type: str = NET_DNS
    dns_name: str
    dns_type: str
    answer: str
    proto: str  # udp | tcp
    peer: str | None = None  # the server address the target asked
    pid: int | None = None


@_event
class Capture(_Frozen):
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


@_event
class Msg(_Frozen):
    """A note from the launcher: a degraded feature, a timeout, an error."""

    type: str = MSG
    action: str
    message: str
    pid: int | None = None


@_event
class Exit(_Frozen):
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


@_event
class End(_Frozen):
    """A process of the tree other than the root ended (the root gets `process.exit`)."""

    type: str = END
    pid: int
    ppid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    signal_name: str | None = None
    core_suppressed: bool | None = None


@_event
class Drop(_Frozen):
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


@_event
class Error(_Frozen):
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
_ORDER = {cls: {name: i for i, name in enumerate(names)} for cls, names in _FIELD_NAMES.items()}
_KEYS = {cls: {name: f',"{name}":' for name in names} for cls, names in _FIELD_NAMES.items()}
# The fields an event was given, in the order given -> in the class's order. Events come from
# a fixed set of code paths, so a few dozen entries; bounded all the same.
_SORTED: dict[type, dict[tuple[str, ...], list[str]]] = {cls: {} for cls in EVENT_CLASSES}
_SORTED_MAX = 4096
# Fields serialised even when None (null says "no exit code: killed by a signal").
_KEEP_NULL: dict[type, frozenset[str]] = {cls: frozenset() for cls in EVENT_CLASSES}
_KEEP_NULL[Exit] = frozenset({"exit_code", "signal"})
# serialise sees only the fields an event was given: a field written as null must be one
# every event of its class is given.
assert all(keep <= cls._required for cls, keep in _KEEP_NULL.items())  # type: ignore[attr-defined]


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
    of start-up). Fields come in the class's order; only those the event was given are
    looked at (the rest are the class's `None` defaults).
    """
    cls = type(event)
    given = event.__dict__
    keep = _KEEP_NULL[cls]
    known = _SORTED[cls]
    order = known.get(names := tuple(given))
    if order is None:
        order = sorted(names, key=_ORDER[cls].__getitem__)
        if len(known) < _SORTED_MAX:
            known[names] = order
    key = _KEYS[cls]
    parts = [f'{{"seq":{seq},"ts":"{ts}"']
    for name in order:
        value = given[name]
        kind = type(value)
        if kind is str:
            parts.append(key[name] + _quote(value))
        elif kind is int:
            parts.append(key[name] + str(value))
        elif value is not None or name in keep:
            parts.append(key[name] + _json_value(value))
    parts.append("}\n")
    return "".join(parts)
