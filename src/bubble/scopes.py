"""Scoped policies (DESIGN §2.8): the directories a target may write beneath and the endpoints
it may connect to, read from a TOML policy file or from repeated flags.

A leaf module: validation only, no kernel calls. The sandbox enforces write scopes with
Landlock path-beneath rules (the kernel re-checks every real operation, so a path swapped after
the supervisor's check fails there) and refuses them where Landlock cannot.

Policy file::

    [fs]
    write = ["/srv/build/out", "/tmp/work"]
    [net]
    connect = ["127.0.0.1:5432", "10.1.0.0/16:443", "pypi.example:443", "[::1]:*"]
"""

from __future__ import annotations

import os

from bubble.errors import UsageError

TYPE_CHECKING = False  # `typing` costs start-up time; mypy still reads this block
if TYPE_CHECKING:
    from typing import Any

# What `bubble policy suggest` never proposes wholesale, and what a write scope may not be
# without --deny-fs=0 ("/" is checked in Policy).
BROAD_DIRS = frozenset({"/", "/etc", "/usr", "/var", "/home", "/root", "/boot", "/opt", "/srv"})

_SECTIONS: dict[str, tuple[str, ...]] = {"fs": ("write",), "net": ("connect",)}


def write_dir(text: object) -> str:
    """A write scope: an absolute path, normalised (no `..`, no trailing slash)."""
    if not isinstance(text, str) or not text:
        raise UsageError(f"write scope {text!r} is not a path", 'e.g. write = ["/tmp/work"]')
    if "\0" in text:
        raise UsageError("a write scope contains a NUL byte", "give a plain absolute path")
    if not text.startswith("/"):
        raise UsageError(
            f"write scope {text!r} is not absolute", f"write it from the root, e.g. /{text}"
        )
    # normpath keeps a leading "//"; collapse it so prefix checks see one spelling.
    return "/" + os.path.normpath(text).lstrip("/")


def endpoint(text: object) -> str:
    """A connect scope `HOST:PORT` (HOST an IP, a CIDR, `[v6]` or a name; PORT a number or
    `*`), returned in one canonical spelling."""
    if not isinstance(text, str) or ":" not in text:
        raise UsageError(
            f"connect scope {text!r} is not HOST:PORT", 'e.g. connect = ["127.0.0.1:5432"]'
        )
    host, _, port = text.rpartition(":")
    if port != "*":
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"connect scope {text!r} has a bad port", "use 1-65535 or *")
        port = str(int(port))
    import ipaddress  # ~2 ms: only runs that name endpoints pay it

    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        net = ipaddress.ip_network(host, strict=False)
    except ValueError:
        if not _hostname(host):
            raise UsageError(
                f"connect scope {text!r}: {host!r} is not an address, a CIDR or a host name",
                "e.g. 10.1.0.0/16:443 or db.internal:5432",
            ) from None
        return f"{host.lower().rstrip('.')}:{port}"
    shown = str(net.network_address) if net.num_addresses == 1 else str(net)
    return f"[{shown}]:{port}" if net.version == 6 else f"{shown}:{port}"


def _hostname(host: str) -> bool:
    labels = host.rstrip(".").split(".")
    return 0 < len(host) <= 253 and all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    )


def from_mapping(data: object) -> dict[str, tuple[str, ...]]:
    """`{"fs": {"write": [...]}, "net": {"connect": [...]}}` -> policy fields `write` and
    `connect`. Strict: an unknown section or key is an error that names it."""
    if not isinstance(data, dict):
        raise UsageError("a policy must be a table/object", 'e.g. {"fs": {"write": ["/tmp/w"]}}')
    out: dict[str, tuple[str, ...]] = {}
    for section, body in data.items():
        keys = _SECTIONS.get(section)
        if keys is None:
            raise UsageError(
                f"unknown policy section [{section}]", f"known sections: {', '.join(_SECTIONS)}"
            )
        if not isinstance(body, dict):
            raise UsageError(f"policy section [{section}] must be a table", f"e.g. [{section}]")
        for key, value in body.items():
            if key not in keys:
                raise UsageError(
                    f"unknown key {key!r} in policy section [{section}]",
                    f"known keys: {', '.join(keys)}",
                )
            if not isinstance(value, list):
                raise UsageError(f"[{section}] {key} must be a list", f'e.g. {key} = ["..."]')
            check = write_dir if key == "write" else endpoint
            out[key] = tuple(dict.fromkeys(check(item) for item in value))
    return out


def to_mapping(write: tuple[str, ...], connect: tuple[str, ...]) -> dict[str, Any]:
    """The inverse of `from_mapping` (empty sections left out)."""
    out: dict[str, Any] = {}
    if write:
        out["fs"] = {"write": list(write)}
    if connect:
        out["net"] = {"connect": list(connect)}
    return out


def load(path: str) -> dict[str, tuple[str, ...]]:
    """Read a policy file: TOML, or JSON when the name ends in `.json`."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(1 << 20)
    except OSError as err:
        raise UsageError(
            f"cannot read policy file {path}: {err.strerror}", "check the path"
        ) from None
    try:
        if path.endswith(".json"):
            import json

            data = json.loads(raw)
        else:
            import tomllib

            data = tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"policy file {path} does not parse: {err}", "check its syntax") from None
    return from_mapping(data)


def covering(scopes: tuple[str, ...], path: str) -> str | None:
    """The scope that `path` (absolute) lies at or beneath, or None."""
    norm = "/" + os.path.normpath(path).lstrip("/")
    for scope in scopes:
        if norm == scope or norm.startswith(scope.rstrip("/") + "/"):
            return scope
    return None
