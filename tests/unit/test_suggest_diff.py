"""`bubble policy suggest` and `bubble diff` on recorded event streams."""

from __future__ import annotations

import json
import subprocess
import sys

from bubble.analysis.diff import diff
from bubble.analysis.suggest import SCOPABLE, suggest, to_toml
from bubble.sandbox.decide import PERFORMED, SCOPED_CALLS
from bubble.scopes import from_mapping


def alert(seq, syscall, path, path2=None, category="fs"):
    e = {"seq": seq, "type": "policy.alert", "category": category, "syscall": syscall, "path": path}
    if path2:
        e["path2"] = path2
    return e


def test_what_suggest_scopes_is_what_the_supervisor_lets_through():
    assert SCOPED_CALLS | PERFORMED == SCOPABLE


def test_a_tree_becomes_its_parent_and_files_their_directory():
    events = [
        alert(1, "openat", "/srv/b/out/a/1.o"),
        alert(2, "openat", "/srv/b/out/b/2.o"),
        alert(3, "mkdir", "/srv/b/out/c"),
        alert(4, "openat", "/srv/b/out/c/3.o"),
        alert(5, "openat", "/var/cache/app/x"),
    ]
    s = suggest(events, check_disk=False)
    assert list(s.write) == ["/srv/b/out", "/var/cache/app"]
    assert [q for q, _, _ in s.write["/srv/b/out"].calls] == [1, 2, 3, 4]


def test_broad_places_are_never_proposed_without_the_flag():
    events = [
        alert(1, "openat", "/etc/cron.d/x"),
        alert(2, "openat", "/etc/evil"),
        alert(3, "unlink", "/home/alice/.bashrc"),
        alert(4, "openat", "/tmp/t"),
    ]
    s = suggest(events, check_disk=False)
    assert list(s.write) == ["/etc/cron.d"]
    assert any("/etc " in n for n in s.notes) and any("/home/alice" in n for n in s.notes)
    assert any(n.startswith("not proposed: /tmp ") for n in s.notes)
    assert "/etc" in suggest(events, allow_broad=True, check_disk=False).write


def test_rename_needs_both_places_and_metadata_is_listed_apart():
    events = [
        alert(1, "renameat2", "/w/a/f", "/w/b/f"),
        alert(2, "fchownat", "/w/a/f"),
        alert(3, "connect", None, category="net") | {"peer": "10.0.0.1", "port": 4444},
    ]
    s = suggest(events, check_disk=False)
    assert list(s.write) == ["/w/a", "/w/b"]
    assert [name for _, name, _ in s.unscoped] == ["fchownat"]
    assert list(s.connect) == ["10.0.0.1:4444"]


def test_the_toml_parses_back_into_the_same_scopes():
    import tomllib

    events = [alert(1, "openat", '/w/we"ird/f'), alert(2, "openat", "/x/y")]
    s = suggest(events, check_disk=False)
    parsed = from_mapping(tomllib.loads(to_toml(s, "run.ndjson")))
    assert parsed == {"write": tuple(s.write)}


def test_diff_groups_by_operation_and_place():
    a = [
        alert(1, "openat", "/tmp/x1"),
        alert(2, "openat", "/tmp/x2"),
        alert(3, "unlinkat", "/etc/passwd"),
        {"seq": 4, "type": "process.spawn", "syscall": "execve", "exe": "/bin/curl", "pid": 9},
    ]
    b = [
        {
            "seq": 1,
            "type": "fs.write",
            "syscall": "openat",
            "path": "/tmp/x7",
            "decision": "ALLOW",
            "category": "fs",
        },
        alert(2, "mkdir", "/proc/4711/x"),
    ]
    d = diff(a, b)
    assert [(i["operation"], i["target"]) for i in d["only_a"]] == [
        ("exec", "/bin/curl"),
        ("unlinkat", "/etc/passwd"),
    ]
    assert [(i["operation"], i["target"]) for i in d["only_b"]] == [("mkdir", "/proc/#/x")]
    (changed,) = d["changed"]
    assert changed["target"] == "/tmp/x#"
    assert changed["a"] == {"decisions": ["denied"], "count": 2}
    assert changed["b"] == {"decisions": ["allowed"], "count": 1}


def test_diff_cli_json_and_text(tmp_path):
    fa, fb = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    fa.write_text("\n".join(json.dumps(e) for e in [alert(1, "openat", "/w/a")]) + "\n")
    fb.write_text(json.dumps(alert(1, "mkdir", "/w/d")) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "bubble", "diff", str(fa), str(fb), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert set(result) == {"only_a", "only_b", "changed"}
    assert result["only_a"][0]["target"] == "/w/a"
    text = subprocess.run(
        [sys.executable, "-m", "bubble", "diff", str(fa), str(fb)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Only in" in text and "/w/d" in text
    bad = subprocess.run(
        [sys.executable, "-m", "bubble", "diff", str(fa), "/nonexistent"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 125 and "cannot read /nonexistent" in bad.stderr
