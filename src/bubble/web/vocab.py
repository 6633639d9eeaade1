"""The seed's web vocabulary <-> `Policy`, both ways, in one place.

A run request says `permissions: {fs_write, network}`, a few toggles, `ask`/`ask_timeout`
and the scoped policy `policy` (the policy file's shape: `{"fs": {"write": [...]}, "net":
{"connect": [...]}}`, or the same as TOML text, as the page's editable box sends it).
`policy_from_body` reads that into a `Policy`; `body_from_policy` writes a `Policy` back in
the same words, which is what a run record shows and what a re-run posts. The round trip
body -> Policy -> body -> Policy is the identity (tests/web/test_web_vocab.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bubble import scopes
from bubble.errors import UsageError
from bubble.policy import Policy
from bubble.web.errors import BadRequest

PERMISSION_KEYS = frozenset({"fs_read", "fs_write", "network"})
# The toggles that are a policy field of the same name, with the page's defaults.
TOGGLES: dict[str, bool] = {"notify_exec": True, "pidns": False, "diagnose": False}
TOGGLES_NET = ("trace_net",)  # needs the network allowed
MIN_TIMEOUT = 0.1  # seconds: less cannot even start the launcher
# Seconds a held call waits for the analyst (ask mode) before the launcher denies it: long
# enough to read a card and click, short enough that an unattended run moves on.
DEFAULT_ASK_TIMEOUT = 60.0
MAX_POLICY_TEXT = 64 << 10  # a policy file of a thousand scopes is ~40 KiB
POLICY_EXAMPLE = '"policy": {"fs": {"write": ["/tmp/out"]}, "net": {"connect": ["127.0.0.1:8080"]}}'


def flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false", f'e.g. "{key}": true')
    return value


def seconds(body: Mapping[str, Any], default: float, cap: float, key: str = "timeout") -> float:
    """A positive, finite number of seconds at most `cap` (`default` when absent)."""
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
    if not flag(body, "ask", False):
        if body.get("ask_timeout") is not None:
            raise BadRequest("ask_timeout applies to ask mode only", 'add "ask": true')
        return {}
    # The launcher's own bound on a held call's wait is an hour (--decide-timeout).
    cap = min(max_timeout, 3600.0)
    wait = seconds(body, min(DEFAULT_ASK_TIMEOUT, cap), cap, "ask_timeout")
    return {"ask": True, "decide_timeout": wait}


def scope_fields(value: object) -> dict[str, tuple[str, ...]]:
    """`policy` of a request: the policy file's object, or its TOML text -> `write`/`connect`.
    Strict as `bubble run --policy` is: the same parser, the same messages."""
    if value is None:
        return {}
    if isinstance(value, str):
        if len(value) > MAX_POLICY_TEXT:
            raise BadRequest(
                f"the policy text is longer than {MAX_POLICY_TEXT >> 10} KiB", "shorten it"
            )
        import tomllib

        try:
            value = tomllib.loads(value)
        except tomllib.TOMLDecodeError as err:
            raise BadRequest(
                f"the policy is not valid TOML: {err}",
                'write it as a policy file, e.g. [fs] then write = ["/tmp/out"]',
            ) from None
        except RecursionError:  # tomllib recurses per nested array: ~1,000 "[" reach it
            raise BadRequest(
                "the policy text is nested too deeply", "a policy file is two flat sections"
            ) from None
    try:
        return scopes.from_mapping(value)
    except UsageError as err:
        raise BadRequest(f"policy: {err.message}", err.hint or POLICY_EXAMPLE) from None


def _permissions(body: Mapping[str, Any]) -> dict[str, Any]:
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
    if not flag(perms, "fs_read", True):
        raise BadRequest("filesystem reads cannot be denied", "drop fs_read or set it to true")
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
    return {
        "deny_fs": fs_write is not True,
        "fs_overlay": "" if fs_write == "overlay" else None,
        "deny_net": network is not True,
        "net_sim": network == "sim",
    }


def policy_from_body(body: Mapping[str, Any], max_timeout: float) -> Policy:
    """The policy part of a run request -> a validated `Policy` (400 naming what is wrong)."""
    peek = body.get("peek_tx", 0)
    if isinstance(peek, bool) or not isinstance(peek, int):
        raise BadRequest("peek_tx must be a whole number of bytes", '"peek_tx": 64')
    fields: dict[str, Any] = _permissions(body)
    fields.update({k: flag(body, k, default) for k, default in TOGGLES.items()})
    fields.update({k: flag(body, k, False) for k in TOGGLES_NET})
    fields.update(_ask(body, max_timeout), peek_tx=peek, **scope_fields(body.get("policy")))
    try:
        return Policy(**fields)
    except UsageError as err:
        raise BadRequest(err.message, err.hint) from None


_DEFAULTS = Policy().to_mapping()


def _fields(policy: Policy | Mapping[str, Any]) -> dict[str, Any]:
    """A policy's fields by name: a `Policy`, or a run row's stored `to_mapping()` read as
    it is (a record written by an older version still shows; it is not validated again)."""
    if isinstance(policy, Policy):
        return policy.to_mapping()
    return {**_DEFAULTS, **policy}


def permissions_of(policy: Policy | Mapping[str, Any]) -> dict[str, Any]:
    p = _fields(policy)
    fs_write: bool | str = "overlay" if p["fs_overlay"] is not None else not p["deny_fs"]
    network: bool | str = "sim" if p["net_sim"] else not p["deny_net"]
    return {"fs_read": True, "fs_write": fs_write, "network": network}


def body_from_policy(policy: Policy | Mapping[str, Any]) -> dict[str, Any]:
    """A policy in the request's words: what `policy_from_body` reads back into the same
    `Policy` (the run's timeout travels apart, as `timeout`)."""
    p = _fields(policy)
    body: dict[str, Any] = {"permissions": permissions_of(p)}
    body.update({k: bool(p[k]) for k in (*TOGGLES, *TOGGLES_NET)}, peek_tx=p["peek_tx"])
    if p["ask"]:
        body.update(ask=True, ask_timeout=p["decide_timeout"])
    scoped = scopes.to_mapping(tuple(p["write"] or ()), tuple(p["connect"] or ()))
    if scoped:
        body["policy"] = scoped
    return body


def policy_view(policy: Policy | Mapping[str, Any]) -> dict[str, Any]:
    """A run record's `policy`: the request's words, the scopes (always present, possibly
    empty) and every flag that differs from off, as the launcher got them."""
    view = body_from_policy(policy)
    view["scopes"] = view.pop("policy", {})
    raw = _fields(policy)
    view["flags"] = {k: v for k, v in raw.items() if v not in (None, False, 0, [])}
    return view
