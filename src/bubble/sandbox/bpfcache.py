"""Compiled filters kept per policy shape, so a fork-server run does not call libseccomp.

`filter.build` costs 2.3-4.5 ms per run (libseccomp adds ~3,700 rules and exports them;
cProfile of a warm build, 2026-11-30), in the keeper, between the request and the target's
exec. Only a few numbers in its output change from run to run: the pids the signal rules
guard (the supervisor, its process group, the keeper). The fork server therefore compiles
each expected policy shape once, with stand-in pids, and a run copies the template and writes
its own pids into the slots the stand-ins took.

Why this yields exactly `filter.build`'s bytes:
- the shape: the template records which policy attributes `conditions` read and their values;
  a policy matches only if it has the same values for all of them (and the same `omit`);
- the slots: compiled twice, with two different sets of stand-ins, the two outputs differ in
  the `k` field of some instructions only; each such field holds the same stand-in in every
  place, by role. Anything else (another field differs, a field mixes roles) and no template
  is kept for the shape;
- the layout: libseccomp sorts comparisons by value, so the stand-ins keep the real pids'
  relative order (a template per order), and real values must be distinct and below the
  constant -1 the rules also compare with. `tests/unit/test_bpfcache.py` compares filled
  templates with fresh builds, byte for byte, over random pids.
A policy or pids outside that (a cold run, an unusual shape) get a fresh `filter.build`.
"""

from __future__ import annotations

import itertools
import struct

from bubble.policy import Policy
from bubble.sandbox import filter as bpf_filter

LOW32 = 0xFFFFFFFF
_STAND_INS = (0x1E000001, 0x2E000001)  # two bases; rank r gets base + r
_K = struct.Struct("=I")  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


class _Reads:
    """The policy as `conditions` sees it, noting each attribute it reads."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.seen: dict[str, object] = {}

    def __getattr__(self, name: str) -> object:
        value = getattr(self._policy, name)
        self.seen[name] = value
        return value


class Template:
    def __init__(self, reads: dict[str, object], omit: frozenset[str], order: tuple[int, ...]):
        self.reads = reads
        self.omit = omit
        self.order = order  # the rank of each role's value (roles: pid, -pgid, guarded...)
        self.bpf = b""
        self.slots: list[tuple[int, int]] = []  # (byte offset of k, role)

    def fits(self, policy: Policy, omit: frozenset[str], order: tuple[int, ...]) -> bool:
        return (
            order == self.order
            and omit == self.omit
            and all(getattr(policy, name) == value for name, value in self.reads.items())
        )

    def fill(self, values: tuple[int, ...]) -> bytes:
        out = bytearray(self.bpf)
        for offset, role in self.slots:
            _K.pack_into(out, offset, values[role])
        return bytes(out)


_TEMPLATES: list[Template] = []


def _roles(sup_pid: int, sup_pgid: int, guarded: tuple[int, ...]) -> tuple[int, ...] | None:
    """The per-run numbers as the filter compares them, or None if a template cannot stand
    for them (equal values, or one not below the -1 the rules also hold)."""
    values = (sup_pid & LOW32, -sup_pgid & LOW32, *(g & LOW32 for g in guarded))
    if len(set(values)) != len(values) or max(values) >= LOW32 or min(values) <= 0:
        return None
    return values


def _ranks(values: tuple[int, ...]) -> tuple[int, ...]:
    ordered = sorted(values)
    return tuple(ordered.index(v) for v in values)


def _compile(policy: Policy, omit: frozenset[str], base: int, order: tuple[int, ...]) -> bytes:
    pid, neg_pgid, *guarded = (base + rank for rank in order)
    return bpf_filter.build(policy, pid, -neg_pgid & LOW32, omit, tuple(guarded))


def prepare(policy: Policy, n_guarded: int = 1, omit: frozenset[str] = frozenset()) -> int:
    """Compile templates for `policy`'s shape, for every order of the roles where the
    process group's value is above the pids (always, since -pgid wraps high). Returns how
    many were kept."""
    kept = 0
    for order in itertools.permutations(range(2 + n_guarded)):
        if order[1] != 1 + n_guarded:
            continue
        template = _template(policy, omit, order)
        if template is not None:
            _TEMPLATES.append(template)
            kept += 1
    return kept


def _template(policy: Policy, omit: frozenset[str], order: tuple[int, ...]) -> Template | None:
    reads = _Reads(policy)
    first = _compile(reads, omit, _STAND_INS[0], order)  # type: ignore[arg-type]
    second = _compile(policy, omit, _STAND_INS[1], order)
    if len(first) != len(second) or len(first) % 8:
        return None
    template = Template(reads.seen, omit, order)
    template.bpf = first
    by_value = [{base + rank: role for role, rank in enumerate(order)} for base in _STAND_INS]
    for offset in range(0, len(first), 8):
        a, b = first[offset : offset + 8], second[offset : offset + 8]
        if a == b:
            continue
        role_a = by_value[0].get(_K.unpack_from(a, 4)[0])
        role_b = by_value[1].get(_K.unpack_from(b, 4)[0])
        if a[:4] != b[:4] or role_a is None or role_a != role_b:
            return None  # not a layout that only the stand-ins change
        template.slots.append((offset + 4, role_a))
    return template


def build(
    policy: Policy,
    sup_pid: int,
    sup_pgid: int,
    omit: frozenset[str] = frozenset(),
    guarded: tuple[int, ...] = (),
) -> bytes:
    """`filter.build(...)`'s bytes: from a template when one fits, else compiled now."""
    values = _roles(sup_pid, sup_pgid, guarded)
    if values is not None:
        order = _ranks(values)
        for template in _TEMPLATES:
            if template.fits(policy, omit, order):
                return template.fill(values)
    return bpf_filter.build(policy, sup_pid, sup_pgid, omit, guarded)
