"""One policy, three spellings: the dataclass, its mapping (stored, sent between processes)
and its `bubble run` flags. Each must round-trip, and each must refuse what it does not know."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bubble import scopes
from bubble.cli import parse_run
from bubble.errors import UsageError
from bubble.policy import Policy, to_argv

_dirs = st.lists(
    st.from_regex(r"/[a-z]{1,8}(/[a-z0-9_.-]{1,8}){0,3}", fullmatch=True).filter(
        lambda p: "/.." not in p and "/./" not in p and not p.endswith(("/.", "/.."))
    ),
    max_size=3,
    unique=True,
)


@st.composite
def policies(draw) -> Policy:
    deny_net = draw(st.booleans())
    trace = not deny_net and draw(st.booleans())
    keep_root = draw(st.booleans())
    return Policy(
        deny_fs=draw(st.booleans()),
        deny_net=deny_net,
        notify_exec=draw(st.booleans()),
        pidns=draw(st.booleans()),
        diagnose=draw(st.booleans()),
        trace_net=trace,
        peek_tx=draw(st.integers(0, 512)) if trace else 0,
        timeout=draw(st.none() | st.floats(0.5, 1e5)),
        memory=draw(st.none() | st.integers(1, 1 << 40)),
        cpu=draw(st.none() | st.integers(1, 1000)),
        max_procs=draw(st.none() | st.integers(1, 1000)),
        max_output=draw(st.none() | st.integers(1, 1 << 30)),
        user=None if keep_root else draw(st.none() | st.sampled_from(["nobody", "daemon"])),
        keep_root=keep_root,
        write=tuple(draw(_dirs)),
    )


@given(policies())
def test_policy_argv_policy_round_trip(policy):
    assert parse_run([*to_argv(policy), "--", "/bin/true"]).policy == policy


@given(policies())
def test_policy_mapping_round_trip(policy):
    assert Policy.from_mapping(policy.to_mapping()) == policy


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"deny_fs": True, "deny_fss": True}, "unknown policy key 'deny_fss'"),
        ({"deny_fs": 1}, "bad value"),
        ({"timeout": "10"}, "bad value"),
        ({"memory": True}, "bad value"),
        ({"write": "/tmp"}, "bad value"),
        ({"write": ["tmp"]}, "not absolute"),
        ({"write": ["/"]}, "allows every write"),
        ([], "must be an object"),
    ],
)
def test_from_mapping_is_strict(mapping, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace("'", "'")):
        Policy.from_mapping(mapping)


def test_write_scope_of_root_is_allowed_when_writes_are():
    assert Policy.from_mapping({"deny_fs": False, "write": ["/"]}).write == ("/",)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("127.0.0.1:5432", "127.0.0.1:5432"),
        ("10.1.0.0/16:443", "10.1.0.0/16:443"),
        ("10.1.2.3/16:*", "10.1.0.0/16:*"),
        ("[::1]:80", "[::1]:80"),
        ("Pypi.Example.:443", "pypi.example:443"),
    ],
)
def test_endpoints_are_canonical(text, canonical):
    assert scopes.endpoint(text) == canonical


@pytest.mark.parametrize("text", ["127.0.0.1", "host:0", "host:70000", "bad host:1", ":80", "x:y"])
def test_bad_endpoints_are_refused(text):
    with pytest.raises(UsageError):
        scopes.endpoint(text)


def test_covering_respects_component_boundaries():
    write = ("/srv/out", "/tmp/work")
    assert scopes.covering(write, "/srv/out") == "/srv/out"
    assert scopes.covering(write, "/srv/out/a/b") == "/srv/out"
    assert scopes.covering(write, "/srv/outside") is None
    assert scopes.covering(write, "/srv/out/../etc/passwd") is None
    assert scopes.covering(("/",), "/anything") == "/"


def test_write_dirs_are_normalised():
    assert scopes.write_dir("//tmp/a/../b/") == "/tmp/b"
