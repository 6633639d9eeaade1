"""The issue's sample end to end through the CLI: `bubble run --report`, `bubble report` in
json/ecs/text, and readable events at a terminal (a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests import behaviour_sample
from tests.conftest import AS_ROOT

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="process.end and the sample need root")


@pytest.fixture
def sample():
    with behaviour_sample.sample() as s:
        yield s


def bubble(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bubble", *args], capture_output=True, text=True, timeout=60, **kw
    )


def test_done_when_sample_through_run_report_and_bubble_report(sample, tmp_path):
    events, rep_path = tmp_path / "ev.ndjson", tmp_path / "report.json"
    flags = ["--notify-exec", "--deny-net=0", "--trace-net", "--report", str(rep_path)]
    r = bubble("run", "--events", str(events), *flags, "--", str(sample.script))
    assert r.returncode == 0, r.stderr
    assert sample.accepted == [1]
    written = json.loads(rep_path.read_text())
    printed = json.loads(bubble("report", str(events)).stdout)
    for rep in (written, printed):
        procs = behaviour_sample.all_processes(rep)
        assert len(procs) == 5
        assert any(n["signal_name"] == "SIGSEGV" for n in procs)
        paths = {f["path"] for f in rep["files"]["mutations"]}
        home = sample.script.parent
        want = {
            str(home / ".ssh/authorized_keys"),
            str(sample.cron),
            "/etc/passwd",
            str(sample.log),
        }
        assert want <= paths
        endpoints = [(e["peer"], e["port"]) for e in rep["network"]["endpoints"]]
        assert endpoints == [("127.0.0.1", sample.port)]
        hits = {a: s["events"] for s in rep["signatures"] for a in s["attack"]}
        assert set(hits) >= behaviour_sample.ATTACK
    ecs = bubble("report", str(events), "--format", "ecs").stdout.splitlines()
    docs = [json.loads(x) for x in ecs]
    techniques = {t for d in docs for t in d.get("threat", {}).get("technique", {}).get("id", [])}
    assert techniques >= behaviour_sample.ATTACK
    text = bubble("report", str(events), "--format=text").stdout
    assert "killed by SIGSEGV" in text and "Log file deleted [T1070.002]" in text


def test_user_rules_flag_and_broken_rule_reported(tmp_path):
    events = tmp_path / "ev.ndjson"
    r = bubble("run", "--events", str(events), "--", "/bin/sh", "-c", "echo x > /srv/marker.bin")
    assert r.returncode != 0
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "m.yml").write_text(
        "title: Marker\nname: marker\nlogsource: {product: linux, category: file_event}\n"
        "detection: {sel: {TargetFilename|endswith: /marker.bin}, condition: sel}\nlevel: low\n"
    )
    (rules / "bad.yml").write_text("title: Bad\ndetection: {condition: nope}\n")
    out = bubble("report", str(events), "--rules", str(rules))
    assert out.returncode == 0
    rep = json.loads(out.stdout)
    assert "marker" in {s["id"] for s in rep["signatures"]}
    assert {Path(e["file"]).name for e in rep["rule_errors"]} == {"bad.yml"}
    assert "rule not loaded:" in out.stderr and "bad.yml" in out.stderr


def test_bad_report_arguments_are_clear_errors(tmp_path):
    r = bubble("report", str(tmp_path / "missing.ndjson"))
    assert r.returncode == 125 and "hint:" in r.stderr
    r = bubble("report", "x", "--format", "xml")
    assert r.returncode == 125 and "use json, ecs or text" in r.stderr


def at_terminal(args: list[str], env: dict) -> str:
    """Run `bubble ARGS` with stdout and stderr on a pseudo-terminal; everything it printed."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "bubble", *args], env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace")


@pytest.mark.parametrize("no_color", [False, True])
def test_terminal_gets_readable_lines_and_summary(no_color, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    if no_color:
        env["NO_COLOR"] = "1"
    target = tmp_path / "x.txt"
    out = at_terminal(["run", "--", "/bin/sh", "-c", f"echo hi > {target}"], env)
    line = next(x for x in out.splitlines() if "openat" in x)
    assert f"openat {target} O_WRONLY|O_CREAT|O_TRUNC (pid " in line
    assert ("\x1b[" in line) is (not no_color)
    assert "DENIED" in line and '{"seq"' not in out
    assert "Behaviour report:" in out and "1 denied" in out
    assert not target.exists()


def test_pipes_and_files_keep_ndjson_unless_forced(tmp_path):
    r = bubble("run", "--", "/bin/true")
    assert r.stderr.startswith('{"seq":1')
    r = bubble("run", "--events-format", "text", "--", "/bin/true")
    assert r.stderr.startswith("SPAWN") and "\x1b[" not in r.stderr
    r = bubble("run", "--events-format", "yaml", "--", "/bin/true")
    assert r.returncode == 125 and "ndjson or text" in r.stderr


def test_report_without_pysigma_still_reports_and_says_why():
    """Debian's interpreter has no pySigma: the report loses its signatures, nothing else."""
    fixture = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "behaviour.ndjson"
    src = str(Path(__file__).resolve().parents[2] / "src")
    r = subprocess.run(
        ["/usr/bin/python3", "-m", "bubble", "report", str(fixture)],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": src, "PATH": "/usr/bin"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["signatures"] == [] and rep["counts"]["processes"] == 5
    assert "pySigma is not installed" in rep["rule_errors"][0]["reason"]
