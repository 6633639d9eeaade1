"""The report from a recorded run (tests/unit/fixtures/behaviour.ndjson: the issue's sample
under `--notify-exec --deny-net=0 --trace-net`), and from any event stream at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubble.analysis import report, signatures, text

FIXTURE = Path(__file__).with_name("fixtures") / "behaviour.ndjson"


@pytest.fixture(scope="module")
def ruleset():
    return signatures.load()


@pytest.fixture(scope="module")
def events():
    return list(report.read_ndjson(FIXTURE))


@pytest.fixture(scope="module")
def rep(events, ruleset):
    return report.build(events, ruleset=ruleset)


def walk(nodes):
    for n in nodes:
        yield n
        yield from walk(n["children"])


def test_process_tree_lists_every_process_with_its_end(rep):
    (root,) = rep["processes"]
    assert root["exe"] == "/tmp/rep/sample2.sh" and root["exit_code"] == 0
    kids = {n["argv"][0]: n for n in root["children"]}
    assert set(kids) == {"chmod", "rm", "python3", "sh"}
    assert kids["chmod"]["exit_code"] == 1 and kids["chmod"]["ppid"] == root["pid"]
    segv = kids["sh"]
    assert (segv["signal"], segv["signal_name"], segv["core_suppressed"]) == (11, "SIGSEGV", True)
    assert segv["exit_code"] is None and segv["end"]
    assert rep["counts"]["processes"] == 5 == len(list(walk(rep["processes"])))


def test_files_network_and_signatures(rep, events):
    paths = {(f["path"], f["operation"], f["decision"]) for f in rep["files"]["mutations"]}
    assert paths == {
        ("/tmp/victim/.ssh/authorized_keys", "write", "denied"),
        ("/etc/cron.d/x", "write", "denied"),
        ("/etc/passwd", "chmod", "denied"),
        ("/var/log/bubble-sample.log", "delete", "denied"),
    }
    (ep,) = rep["network"]["endpoints"]
    assert (ep["peer"], ep["proto"], ep["decision"], ep["count"]) == (
        "127.0.0.1",
        "tcp",
        "allowed",
        1,
    )
    by_attack = {a: s for s in rep["signatures"] for a in s["attack"]}
    seq_of = {e.get("path"): e["seq"] for e in events if e.get("path")}
    assert by_attack["T1098.004"]["events"] == [seq_of["/tmp/victim/.ssh/authorized_keys"]]
    assert by_attack["T1053.003"]["events"] == [seq_of["/etc/cron.d/x"]]
    assert seq_of["/etc/passwd"] in by_attack["T1222.002"]["events"]
    assert by_attack["T1070.002"]["events"] == [seq_of["/var/log/bubble-sample.log"]]
    assert all(by_attack[t]["outcome"] == "denied" for t in ("T1098.004", "T1053.003"))
    assert rep["run"]["exit_code"] == 0 and rep["run"]["user"] == "nobody"
    assert rep["counts"]["alerts"] == 4 and rep["counts"]["events"] == len(events)
    chmod = next(n for n in walk(rep["processes"]) if n["argv"][0] == "chmod")
    assert chmod["alerts"] == 2  # two rules read its fchmodat


def test_orchestrator_drop_and_error_events_are_read(ruleset, events):
    drop = {"type": "fs.drop", "cwd": "/w", "count": 1, "modified": [], "deleted": [],
            "files": [{"name": "out.bin", "kind": "file", "size": 3, "sha256": "ab" * 32}]}  # fmt: skip
    err = {"type": "run.error", "action": "launcher", "message": "x: not found", "hint": "fix PATH"}
    n = len(events)
    more = [*events, drop | {"seq": n + 1, "ts": "t"}, err | {"seq": n + 2, "ts": "t"}]
    rep = report.build(more, ruleset=ruleset)
    assert rep["files"]["created"] == [drop["files"][0]]
    assert rep["run"]["errors"] == [{"message": "x: not found", "hint": "fix PATH"}]


def test_layer_drops_are_listed_per_path_with_sha256(ruleset, events):
    """--fs-overlay's shape (one fs.drop per path) lands in the same lists as the summary's."""
    sha = "cd" * 32
    layer = [
        {"type": "fs.drop", "path": "/tmp/evil", "change": "created", "kind": "file",
         "size": 2, "sha256": sha},
        {"type": "fs.drop", "path": "/etc/hostname", "change": "modified", "kind": "file",
         "size": 9, "sha256": sha},
        {"type": "fs.drop", "path": "/home/x", "change": "deleted", "kind": "dir"},
        {"type": "fs.drop", "path": "/b", "change": "renamed", "kind": "file", "path2": "/a"},
    ]  # fmt: skip
    n = len(events)
    rep = report.build([*events, *(d | {"seq": n + i, "ts": "t"} for i, d in enumerate(layer, 1))],
                       ruleset=ruleset)  # fmt: skip
    files = rep["files"]
    assert {"name": "/tmp/evil", "kind": "file", "size": 2, "sha256": sha,
            "change": "created"} in files["created"]  # fmt: skip
    assert {f["name"]: f.get("path2") for f in files["created"]}["/b"] == "/a"
    assert [f["sha256"] for f in files["modified"] if f["name"] == "/etc/hostname"] == [sha]
    assert [f["name"] for f in files["deleted"]] == ["/home/x"]


def test_text_summary_reads_well(rep):
    out = text.summary(rep)
    assert "killed by SIGSEGV, core dump refused" in out
    assert "SSH authorized_keys changed [T1098.004] denied" in out
    assert "denied  delete    /var/log/bubble-sample.log" in out
    assert "allowed connect tcp 127.0.0.1:" in out


def test_hostile_strings_cannot_drive_the_terminal(ruleset):
    evil = "/tmp/\x1b[2J\x1b]0;owned\x07x\nFAKE"
    e = {"seq": 1, "ts": "t", "type": "process.spawn", "pid": 1, "exe": evil, "argv": [evil],
         "action": "launcher.start"}  # fmt: skip
    out = text.summary(report.build([e], ruleset=ruleset))
    assert "\x1b" not in out and "\x07" not in out and "\nFAKE" not in out


def test_deep_fork_chain_and_ppid_cycles_do_not_break_the_report(ruleset):
    chain = [{"seq": i + 1, "ts": "t", "type": "process.end", "pid": 1000 + i, "ppid": 999 + i,
              "exit_code": 0} for i in range(3000)]  # fmt: skip
    cycle = [{"seq": 3001, "ts": "t", "type": "process.end", "pid": 5, "ppid": 6, "exit_code": 0},
             {"seq": 3002, "ts": "t", "type": "process.end", "pid": 6, "ppid": 5, "exit_code": 0}]  # fmt: skip
    rep = report.build(chain + cycle, ruleset=ruleset)
    json.dumps(rep)  # no RecursionError
    assert len(list(walk(rep["processes"]))) == 3002


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(max_size=20),
)  # fmt: skip
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=5), scalars, max_size=3)  # fmt: skip
KEYS = ["seq", "ts", "type", "pid", "ppid", "exe", "argv", "action", "category", "syscall",
        "path", "path2", "flags", "mode", "peer", "port", "family_name", "sock_type",
        "dns_name", "exit_code", "signal", "signal_name", "core_suppressed", "files", "detail",
        "message", "hint", "user", "decision"]  # fmt: skip
TYPES = ["process.spawn", "process.end", "process.exit", "policy.alert", "fs.write",
         "net.connect", "net.dns", "net.capture", "fs.drop", "run.error", "sandbox.msg"]  # fmt: skip
event = st.fixed_dictionaries(
    {"seq": st.integers(1, 50), "type": st.sampled_from(TYPES)},
    optional={k: values for k in KEYS if k not in ("seq", "type")}
    | {
        "pid": st.integers(1, 8),
        "ppid": st.integers(1, 8),
        "syscall": st.sampled_from(
            ["openat", "unlinkat", "fchmodat", "ptrace", "connect", "rename"]
        ),
        "category": st.sampled_from(["fs", "net", "sys"]),
        "mode": st.integers(0, 0o7777) | values,
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event | values, max_size=25))
def test_any_event_stream_yields_a_valid_report(ruleset, stream):
    from bubble.analysis import ecs

    rep = report.build(stream, ruleset=ruleset)
    assert set(rep) == {"version", "run", "processes", "files", "network", "privileged",
                        "signatures", "rule_errors", "counts"}  # fmt: skip
    json.loads(json.dumps(rep))
    text.summary(rep)
    clean = report.clean(stream)
    for doc in ecs.documents(clean, rep):
        json.dumps(doc)
    for hit in rep["signatures"]:
        assert hit["events"] and all(isinstance(s, int) for s in hit["events"])
    assert rep["counts"]["events"] == len(clean)
