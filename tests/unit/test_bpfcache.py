"""The fork server's compiled-filter templates give exactly the bytes of a fresh build."""

from __future__ import annotations

import random

import pytest

from bubble.policy import Policy
from bubble.sandbox import bpfcache
from bubble.sandbox import filter as bpf_filter

PID_MAX = 1 << 22  # the kernel's ceiling for pid_max on 64-bit


@pytest.fixture(autouse=True)
def _fresh_cache() -> object:
    saved = list(bpfcache._TEMPLATES)
    bpfcache._TEMPLATES.clear()
    yield
    bpfcache._TEMPLATES[:] = saved


def _pids(rng: random.Random) -> tuple[int, int, int]:
    sup = rng.randrange(2, PID_MAX)
    keeper = rng.randrange(2, PID_MAX)
    while keeper == sup:
        keeper = rng.randrange(2, PID_MAX)
    pgid = rng.choice([sup, rng.randrange(2, PID_MAX)])  # fork server: setsid, so pgid = pid
    return sup, pgid, keeper


POLICIES = [
    Policy(),
    Policy(deny_net=False),
    Policy(deny_fs=False),
    Policy(trace_net=True, deny_net=False),
    Policy(notify_exec=True, trace_net=True, deny_net=False, peek_tx=64),
]


@pytest.mark.parametrize("policy", POLICIES, ids=range(len(POLICIES)))
def test_filled_template_equals_fresh_build(policy: Policy) -> None:
    assert bpfcache.prepare(policy) == 2  # both orders of the two pids
    rng = random.Random(14)
    for _ in range(40):
        sup, pgid, keeper = _pids(rng)
        fresh = bpf_filter.build(policy, sup, pgid, frozenset(), (keeper,))
        roles = bpfcache._roles(sup, pgid, (keeper,))
        assert roles is not None
        assert any(t.fits(policy, frozenset(), bpfcache._ranks(roles)) for t in bpfcache._TEMPLATES)
        assert bpfcache.build(policy, sup, pgid, frozenset(), (keeper,)) == fresh


def test_template_is_used_and_has_the_pids_in_it() -> None:
    bpfcache.prepare(Policy())
    template = bpfcache._TEMPLATES[0]
    assert template.slots, "the signal rules' pids must be slots"
    roles = {role for _, role in template.slots}
    assert roles == {0, 1, 2}  # the supervisor, its group (kill), the keeper


def test_other_shape_compiles_fresh() -> None:
    bpfcache.prepare(Policy())
    other = Policy(deny_net=False)
    assert not any(t.fits(other, frozenset(), (0, 2, 1)) for t in bpfcache._TEMPLATES)
    assert bpfcache.build(other, 100, 100, frozenset(), (101,)) == bpf_filter.build(
        other, 100, 100, frozenset(), (101,)
    )


def test_omitted_rows_are_part_of_the_shape() -> None:
    bpfcache.prepare(Policy())
    omit = frozenset({"kill"})
    built = bpfcache.build(Policy(), 100, 100, omit, (101,))
    assert built == bpf_filter.build(Policy(), 100, 100, omit, (101,))
    assert built != bpfcache.build(Policy(), 100, 100, frozenset(), (101,))


@pytest.mark.parametrize(
    ("sup", "pgid", "keeper"),
    [(100, 100, 100), (100, 1, 101), (100, -100, 101)],  # equal; -1 itself; -pgid == pid
)
def test_pids_a_template_cannot_stand_for(sup: int, pgid: int, keeper: int) -> None:
    bpfcache.prepare(Policy())
    assert bpfcache._roles(sup, pgid, (keeper,)) is None
    assert bpfcache.build(Policy(), sup, pgid, frozenset(), (keeper,)) == bpf_filter.build(
        Policy(), sup, pgid, frozenset(), (keeper,)
    )


def test_the_fork_servers_shapes_cover_the_pages_default_run() -> None:
    from bubble.sandbox.forkserver import WARM_POLICIES

    for policy in WARM_POLICIES:
        bpfcache.prepare(policy)
    # What the page sends by default (bubble.web.parse): --notify-exec, limits, a timeout.
    for page in (
        Policy(notify_exec=True, timeout=30.0, max_output=1 << 24),
        Policy(notify_exec=True, deny_net=False, fs_overlay=""),
    ):
        roles = bpfcache._roles(4000, 4000, (4001,))
        assert roles is not None
        assert any(t.fits(page, frozenset(), bpfcache._ranks(roles)) for t in bpfcache._TEMPLATES)
        built = bpfcache.build(page, 4000, 4000, frozenset(), (4001,))
        assert built == bpf_filter.build(page, 4000, 4000, frozenset(), (4001,))
