"""The run policy: a frozen dataclass, its command-line flags, and their validation.

One table (`FLAGS`) names every `bubble run` flag, the policy field it sets and how its value
is parsed. The CLI parses with it and the orchestrator turns a policy back into flags with
`to_argv`, so both always agree on names and meanings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bubble.errors import UsageError

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

MAX_PEEK = 512


@dataclass(frozen=True, slots=True)
class Policy:
    """What the target may do and how it is watched. Defaults are the seed's: deny both."""

    deny_fs: bool = True
    deny_net: bool = True
    net_sim: bool = False  # inside the wall: our DNS answers, a sinkhole accepts (netsim/)
    notify_exec: bool = False
    pidns: bool = False
    diagnose: bool = False
    trace_net: bool = False
    peek_tx: int = 0
    timeout: float | None = None
    memory: int | None = None  # bytes of address space (RLIMIT_AS)
    cpu: int | None = None  # CPU seconds (RLIMIT_CPU)
    max_procs: int | None = None  # RLIMIT_NPROC for the target's user
    max_output: int | None = None  # bytes of stdout+stderr kept
    user: str | None = None  # target user when run as root (default nobody)
    keep_root: bool = False
    keep_caps: bool = False  # with --keep-root: keep the administrative capabilities too
    write: tuple[str, ...] = ()  # write scopes: directories (or files) writable beneath
    connect: tuple[str, ...] = ()  # connect scopes: HOST:PORT endpoints
    decide: str | None = None  # decision helper command (the seed's SUPERVISOR_JSON_FD protocol)
    decide_timeout: float = 5.0  # seconds a held call waits for its decision
    ask: bool = False  # held calls are the analyst's to decide (through SUPERVISOR_JSON_FD)
    fs_overlay: str | None = None  # writes go to a throwaway layer; non-empty: copy drops here
    keep_layer: bool = False  # keep the layer's files on the host after the run
    max_layer: int | None = None  # bytes the layer may hold (default layerplan.DEFAULT_SIZE)

    def __post_init__(self) -> None:
        if not 0 <= self.peek_tx <= MAX_PEEK:
            raise UsageError(
                f"--peek-tx={self.peek_tx} is out of range", f"use a value from 0 to {MAX_PEEK}"
            )
        if self.peek_tx and not self.trace_net:
            raise UsageError("--peek-tx needs --trace-net", "add --trace-net --deny-net=0")
        if self.trace_net and self.deny_net:
            raise UsageError(
                "--trace-net observes allowed network traffic, but the network is denied",
                "add --deny-net=0 to allow and trace it",
            )
        if self.net_sim and not self.deny_net:
            raise UsageError(
                "--net-sim runs inside the network wall, which --deny-net=0 removes",
                "drop --deny-net=0 (the simulated internet never reaches the real one)",
            )
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError("--timeout must be positive", "give seconds, e.g. --timeout 30")
        for name in ("memory", "cpu", "max_procs", "max_output"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be positive", f"e.g. {flag} {_EXAMPLES[name]}")
        if self.keep_caps and not self.keep_root:
            raise UsageError("--keep-caps needs --keep-root", "add --keep-root or drop --keep-caps")
        if self.keep_root and self.user:
            raise UsageError("--keep-root and --user contradict each other", "pass only one")
        if not 0 < self.decide_timeout <= 3600:
            raise UsageError(
                "--decide-timeout must be between 0 and 3600 seconds", "e.g. --decide-timeout 5"
            )
        if "/" in self.write and self.deny_fs:
            raise UsageError(
                "a write scope of / allows every write", "use --deny-fs=0 to allow them all"
            )
        if self.connect and not self.deny_net:
            raise UsageError(
                "connect scopes narrow a denied network, but the network is allowed",
                "drop --deny-net=0, or drop the connect scopes",
            )
        if self.fs_overlay is None and (self.keep_layer or self.max_layer):
            flag = "--keep-layer" if self.keep_layer else "--max-layer"
            raise UsageError(f"{flag} needs --fs-overlay", f"add --fs-overlay to {flag}")
        if self.max_layer is not None and self.max_layer < 1 << 20:
            raise UsageError("--max-layer is below 1M", "e.g. --max-layer 256M")
        if self.fs_overlay is not None and self.write:
            raise UsageError(
                "write scopes mean nothing under --fs-overlay: the layer takes every write",
                "drop --allow-write (or [fs] write), or drop --fs-overlay",
            )

    @property
    def writes_allowed(self) -> bool:
        """Whether file mutations go through: into the layer, or with --deny-fs=0 the host."""
        return self.fs_overlay is not None or not self.deny_fs

    def to_mapping(self) -> dict[str, Any]:
        """Every field by name (tuples as lists): the one representation stored and sent
        between processes."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_mapping(cls, data: object) -> Policy:
        """The inverse of `to_mapping`. Strict: an unknown key is an error naming it."""
        if not isinstance(data, dict):
            raise UsageError("a policy must be an object", 'e.g. {"deny_fs": true}')
        names = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            field = names.get(key)
            if field is None:
                raise UsageError(f"unknown policy key {key!r}", f"known keys: {', '.join(names)}")
            values[key] = _typed(key, str(field.type), value)
        return cls(**values)

    def replace(self, **changes: Any) -> Policy:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def _typed(key: str, kind: str, value: object) -> object:
    """Check one mapping value against its field's annotation (as text: `from __future__`)."""
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "tuple[str, ...]":
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if isinstance(value, list | tuple) and ok:
            from bubble import scopes

            check = scopes.write_dir if key == "write" else scopes.endpoint
            value = tuple(dict.fromkeys(check(v) for v in value))
    elif value is None:
        ok = "None" in kind
    elif kind.startswith("float"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise UsageError(f"policy key {key!r} has a bad value {value!r}", f"expected {kind}")
    return value


_EXAMPLES = {"memory": "512M", "cpu": "10", "max_procs": "64", "max_output": "10M"}


def parse_bool01(flag: str, text: str) -> bool:
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{flag}={text} is not 1 or 0", f"write {flag}=1 or {flag}=0")


def parse_int(flag: str, text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a whole number", f"e.g. {flag}=64") from None


def parse_seconds(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a number of seconds", f"e.g. {flag} 30") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"{flag} {text!r} is not a number of seconds", f"e.g. {flag} 30")
    return value


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(flag: str, text: str) -> int:
    """`512M`, `1g`, `4096`, `10MiB` -> bytes."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1 << 62:  # also refuses nan and inf
        raise UsageError(f"{flag} {text!r} is not a size", f"e.g. {flag} 512M")
    return int(value)


# flag -> (policy field, kind). Kinds: "01" takes =1|0, "switch" takes no value,
# "int"/"seconds"/"size"/"str" take a value (`--flag=V` or `--flag V`); "list" takes a value
# and may be repeated, each adding one item; "optstr" takes `--flag` (the empty string) or
# `--flag=V` (never the next argument).
FLAGS: dict[str, tuple[str, str]] = {
    "--deny-fs": ("deny_fs", "01"),
    "--deny-net": ("deny_net", "01"),
    "--net-sim": ("net_sim", "switch"),
    "--notify-exec": ("notify_exec", "switch"),
    "--pidns": ("pidns", "switch"),
    "--diagnose": ("diagnose", "switch"),
    "--trace-net": ("trace_net", "switch"),
    "--peek-tx": ("peek_tx", "int"),
    "--timeout": ("timeout", "seconds"),
    "--memory": ("memory", "size"),
    "--cpu": ("cpu", "int"),
    "--max-procs": ("max_procs", "int"),
    "--max-output": ("max_output", "size"),
    "--user": ("user", "str"),
    "--keep-root": ("keep_root", "switch"),
    "--keep-caps": ("keep_caps", "switch"),
    "--allow-write": ("write", "list"),
    "--decide": ("decide", "str"),
    "--decide-timeout": ("decide_timeout", "seconds"),
    "--ask": ("ask", "switch"),
    "--allow-connect": ("connect", "list"),
    "--fs-overlay": ("fs_overlay", "optstr"),
    "--keep-layer": ("keep_layer", "switch"),
    "--max-layer": ("max_layer", "size"),
}

_PARSERS = {"01": parse_bool01, "int": parse_int, "seconds": parse_seconds, "size": parse_size}


def _scope(flag: str, text: str) -> str:
    from bubble import scopes

    return scopes.write_dir(text) if flag == "--allow-write" else scopes.endpoint(text)


def convert(flag: str, kind: str, text: str) -> Any:
    """Parse the text of one flag's value (for a "list" flag: one item)."""
    if kind == "list":
        return _scope(flag, text)
    parser = _PARSERS.get(kind)
    return parser(flag, text) if parser else text


def to_argv(policy: Policy) -> list[str]:
    """The `bubble run` flags that reproduce `policy` (defaults omitted)."""
    default = Policy()
    argv: list[str] = []
    for flag, (name, kind) in FLAGS.items():
        value = getattr(policy, name)
        if value == getattr(default, name):
            continue
        if kind == "01":
            argv.append(f"{flag}={int(value)}")
        elif kind == "switch" or (kind == "optstr" and not value):
            argv.append(flag)
        elif kind == "list":
            argv.extend(f"{flag}={item}" for item in value)
        else:
            argv.append(f"{flag}={value}")
    return argv
