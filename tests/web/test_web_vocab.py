"""The seed's web vocabulary and `Policy`, both ways (`web/vocab.py`): every body the page
or a client can send reads into a `Policy` that writes back into a body reading into the
same `Policy`; a scoped policy as an object and as TOML text are one thing; anything else is
a 400 in the one error shape, never another exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubble.policy import Policy
from bubble.web.errors import BadRequest
from bubble.web.vocab import body_from_policy, policy_from_body, policy_view

MAX_TIMEOUT = 120.0
segment = st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=8)
segment = segment.filter(lambda s: s not in (".", ".."))
directory = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
host = st.sampled_from(["127.0.0.1", "::1", "10.1.0.0/16", "db.internal", "[fe80::1]"])
port = st.one_of(st.integers(1, 65535).map(str), st.just("*"))
endpoint = st.builds(lambda h, p: f"{h}:{p}", host, port)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    fs_write = draw(st.sampled_from([True, False, "overlay"]))
    network = draw(st.sampled_from([True, False, "sim"]))
    body: dict[str, Any] = {"permissions": {"fs_write": fs_write, "network": network}}
    for key in ("notify_exec", "pidns", "diagnose"):
        if draw(st.booleans()):
            body[key] = draw(st.booleans())
    if network is True and draw(st.booleans()):
        body["trace_net"] = True
        body["peek_tx"] = draw(st.integers(0, 512))
    if draw(st.booleans()):
        body["ask"] = True
        body["ask_timeout"] = draw(st.floats(0.1, MAX_TIMEOUT))
    scoped: dict[str, Any] = {}
    if fs_write != "overlay" and draw(st.booleans()):
        scoped["fs"] = {"write": draw(st.lists(directory, max_size=3))}
    if network in (False, "sim") and draw(st.booleans()):  # the wall: connects are scoped
        scoped["net"] = {"connect": draw(st.lists(endpoint, max_size=3))}
    if scoped:
        body["policy"] = scoped
    return body


@settings(max_examples=300, deadline=None)
@given(bodies())
def test_body_policy_body_policy_is_the_identity(body: dict[str, Any]) -> None:
    policy = policy_from_body(body, MAX_TIMEOUT)
    again = body_from_policy(policy)
    assert policy_from_body(again, MAX_TIMEOUT) == policy
    assert body_from_policy(policy_from_body(again, MAX_TIMEOUT)) == again
    # A run row stores `to_mapping()`: read from it, the words are the same.
    assert body_from_policy(policy.to_mapping()) == again
    # The record's view names the same scopes.
    assert policy_view(policy.to_mapping())["scopes"] == again.get("policy", {})


def test_a_stored_row_shows_even_if_it_would_not_validate_today() -> None:
    """Rows are read as stored: an older record is never a 500 because a rule was added."""
    row = {"deny_fs": True, "write": ["/"], "notify_exec": True}  # "/" is refused now
    body = body_from_policy(row)
    assert body["policy"] == {"fs": {"write": ["/"]}}
    assert body["permissions"] == {"fs_read": True, "fs_write": False, "network": False}


def test_the_toml_text_and_the_object_are_one_policy() -> None:
    text = (
        '[fs]\nwrite = ["/tmp/a/../b", "/srv/out"]  # evidence\n[net]\nconnect = ["127.0.0.1:80"]\n'
    )
    obj = {"fs": {"write": ["/tmp/b", "/srv/out"]}, "net": {"connect": ["127.0.0.1:80"]}}
    assert policy_from_body({"policy": text}, 10) == policy_from_body({"policy": obj}, 10)
    policy = policy_from_body({"policy": text}, 10)
    assert policy.write == ("/tmp/b", "/srv/out") and policy.connect == ("127.0.0.1:80",)
    assert policy_from_body({"policy": "# nothing\n"}, 10) == Policy(notify_exec=True)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("[fs]\nwrite = [", "not valid TOML"),
        ({"fs": {"read": ["/x"]}}, "unknown key 'read' in policy section [fs]"),
        ({"disk": {}}, "unknown policy section [disk]"),
        ({"fs": {"write": ["tmp/x"]}}, "is not absolute"),
        ({"fs": {"write": "/tmp/x"}}, "must be a list"),
        ({"net": {"connect": ["127.0.0.1"]}}, "is not HOST:PORT"),
        ({"net": {"connect": ["127.0.0.1:99999"]}}, "bad port"),
        (["/tmp"], "must be a table/object"),
        ('[fs]\nwrite = ["/"]', "a write scope of / allows every write"),
        ("a = " + "[" * 30000, "nested too deeply"),  # tomllib would raise RecursionError
    ],
)
def test_a_bad_policy_is_a_400_naming_it(value: object, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        policy_from_body({"policy": value}, 10)
    assert fragment in caught.value.message and caught.value.hint


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["fs", "net", "x"]), json_values, max_size=3) | st.text())
def test_any_policy_value_is_a_policy_or_a_400(value: object) -> None:
    try:
        policy_from_body({"policy": value}, 10)
    except BadRequest as err:
        assert err.message and err.hint
