"""`process.end` for every process of the tree but the root, from real processes: exit codes,
signals (no exit_group on the way out), refused core dumps, threads (not processes) and
orphans re-parented to the keeper. The root keeps `process.exit`, always the last event."""

from __future__ import annotations

import pytest

from tests.conftest import AS_ROOT, run_bubble

pytestmark = pytest.mark.skipif(
    not AS_ROOT, reason="process.end needs the process connector (CAP_NET_ADMIN): run as root"
)
PY = "/usr/bin/python3"


def ends(result) -> list[dict]:
    return result.of_type("process.end")


def test_children_exit_codes_and_parent():
    r = run_bubble(["/bin/sh", "-c", 'sh -c "exit 7"; sh -c "exit 0"; exit 3'])
    root = r.events[0]["pid"]
    codes = sorted(e["exit_code"] for e in ends(r))
    assert codes == [0, 7]
    assert all(e["ppid"] == root and "signal" not in e for e in ends(r))
    assert root not in {e["pid"] for e in ends(r)}, "the root ends with process.exit only"
    assert r.exit["exit_code"] == 3 and r.events[-1]["type"] == "process.exit"


def test_signals_and_core_suppression():
    r = run_bubble(["/bin/sh", "-c", 'sh -c "kill -SEGV \\$\\$"; sh -c "kill -TERM \\$\\$"; true'])
    by_sig = {e["signal_name"]: e for e in ends(r)}
    assert set(by_sig) == {"SIGSEGV", "SIGTERM"}, ends(r)
    assert by_sig["SIGSEGV"]["signal"] == 11 and by_sig["SIGSEGV"]["core_suppressed"] is True
    assert by_sig["SIGTERM"]["signal"] == 15 and "core_suppressed" not in by_sig["SIGTERM"]
    assert all("exit_code" not in e for e in ends(r))


def test_threads_are_not_processes():
    code = "import threading\nts=[threading.Thread(target=lambda:0) for _ in range(4)]\n"
    code += "[t.start() for t in ts]; [t.join() for t in ts]\nraise SystemExit(9)"
    r = run_bubble(["/bin/sh", "-c", f'{PY} -c "$0"; true', code])
    assert [e["exit_code"] for e in ends(r)] == [9], ends(r)


def test_orphan_reparented_still_reported():
    # The subshell outlives its parent: it is re-parented to the keeper, which reaps it.
    r = run_bubble(["/bin/sh", "-c", "(sleep 0.3; exit 5) & exit 0"])
    root = r.events[0]["pid"]
    (orphan,) = [e for e in ends(r) if e.get("exit_code") == 5]
    assert orphan["ppid"] == root, "reported with the parent that made it"
    assert r.events[-1]["type"] == "process.exit"
    assert r.events.index(orphan) < len(r.events) - 1


def test_exec_spawns_carry_ppid():
    r = run_bubble(["/bin/sh", "-c", "/bin/true; exit 0"], ["--notify-exec"])
    root = r.events[0]["pid"]
    execs = [e for e in r.of_type("process.spawn") if e.get("syscall") == "execve"]
    child = next(e for e in execs if e["exe"] == "/bin/true")
    assert child["ppid"] == root
    (end,) = ends(r)
    assert end["pid"] == child["pid"] and end["exit_code"] == 0
