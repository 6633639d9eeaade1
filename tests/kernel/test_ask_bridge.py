"""Ask mode's bridge between a real launcher and a decision source (the store, in the
orchestrator): allow once, deny, always allow a path, and an unanswered call denied on time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from bubble.jobs.ask import AskBridge, socket_for_launcher


def run_with_bridge(script: str, decide, workdir, timeout_s: str = "3"):
    ours, theirs = socket_for_launcher()
    asked: list[dict] = []
    stop = threading.Event()
    bridge = AskBridge(ours, decide, stop)
    bridge.start()
    events = workdir.parent / f"{workdir.name}.ndjson"
    cmd = [
        sys.executable,
        "-m",
        "bubble",
        "run",
        "--ask",
        "--decide-timeout",
        timeout_s,
        "--events",
        str(events),
        "--",
        "/bin/sh",
        "-c",
        script,
    ]
    proc = subprocess.run(
        cmd,
        env={**os.environ, "SUPERVISOR_JSON_FD": str(theirs)},
        pass_fds=(theirs,),
        capture_output=True,
        text=True,
        timeout=60,
    )
    os.close(theirs)
    stop.set()
    bridge.join(5)
    evs = [json.loads(line) for line in events.read_text().splitlines()]
    events.unlink()
    asked.extend(e for e in evs if e["type"] == "policy.ask")
    return proc, evs, asked


def test_allow_deny_always_and_silence(workdir):
    answers: dict[int, str] = {}
    seen: list[int] = []

    def decide(seqs):
        seen.extend(s for s in seqs if s not in seen)
        # the analyst: first ask allowed once, second denied, third "always", rest silent
        plan = ["allow", "deny", "always"]
        for i, seq in enumerate(seen[:3]):
            answers.setdefault(seq, plan[i])
        return {s: answers[s] for s in seqs if s in answers}

    script = (
        f"echo 1 > {workdir}/once; echo 2 > {workdir}/denied; echo 3 > {workdir}/always;"
        f" echo 4 > {workdir}/always; echo 5 > {workdir}/ignored; echo end"
    )
    start = time.monotonic()
    proc, evs, asked = run_with_bridge(script, decide, workdir)
    assert proc.stdout.strip() == "end", proc.stderr
    assert (workdir / "once").read_text() == "1\n"
    assert not (workdir / "denied").exists()
    assert (workdir / "always").read_text() == "4\n"  # the second write allowed unasked
    assert not (workdir / "ignored").exists()  # nobody answered: denied after the timeout
    assert time.monotonic() - start < 30
    finals = [e for e in evs if e["type"] in ("policy.allow", "policy.alert")]
    assert [(e["type"], e.get("decided_by")) for e in finals] == [
        ("policy.allow", "analyst"),
        ("policy.alert", "analyst"),
        ("policy.allow", "analyst"),
        ("policy.allow", "analyst"),
        ("policy.alert", "analyst"),
    ]
    assert "no decision within 3 s" in finals[-1]["detail"]
    assert len(asked) == 5
