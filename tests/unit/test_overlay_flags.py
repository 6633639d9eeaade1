"""`--fs-overlay[=DIR]`, `--keep-layer`, `--max-layer`: parsing, round trip, clear errors."""

from __future__ import annotations

import os

import pytest

from bubble.cli import parse_run
from bubble.errors import UsageError
from bubble.policy import Policy, to_argv


def test_optional_value_never_takes_the_next_argument():
    assert parse_run(["--fs-overlay", "prog"]).policy.fs_overlay == ""
    assert parse_run(["--fs-overlay", "prog"]).argv == ["prog"]
    parsed = parse_run(["--fs-overlay=out", "--max-layer", "64M", "--keep-layer", "--", "p"])
    assert parsed.policy.fs_overlay == os.path.abspath("out")
    assert parsed.policy.max_layer == 64 << 20 and parsed.policy.keep_layer


def test_round_trip_through_argv():
    for policy in (
        Policy(fs_overlay=""),
        Policy(fs_overlay="/x", keep_layer=True, max_layer=1 << 30),
    ):
        assert parse_run([*to_argv(policy), "--", "p"]).policy == policy


def test_policy_mapping_round_trip_keeps_the_layer():
    policy = Policy(fs_overlay="/x", keep_layer=True, max_layer=64 << 20)
    assert Policy.from_mapping(policy.to_mapping()) == policy


def test_overlay_allows_writes_whatever_deny_fs_says():
    assert Policy(fs_overlay="").writes_allowed and not Policy().writes_allowed


@pytest.mark.parametrize(
    "args, words",
    [
        (["--keep-layer", "p"], "--keep-layer needs --fs-overlay"),
        (["--max-layer", "1G", "p"], "--max-layer needs --fs-overlay"),
        (["--fs-overlay", "--max-layer", "10k", "p"], "below 1M"),
        (["--fs-overlay=", "p"], "empty value"),
        (["--fs-overlay", "--allow-write=/tmp", "p"], "write scopes mean nothing"),
    ],
)
def test_bad_combinations_say_how_to_fix_them(args, words):
    with pytest.raises(UsageError) as err:
        parse_run(args)
    assert words in str(err.value) and err.value.hint
