"""The supervisor loop under hostile and heavy targets.

What must hold whatever the target does: every notification is answered and yields exactly
one event; bad pointers become event fields, never a crash; paths are reported absolute; the
run ends only when the last process of the tree is gone; pseudo-devices keep working under
--deny-fs=1 while other write-opens are denied. Counts are checked against what the probe says
it did, effects against the filesystem seen from outside.
"""

from __future__ import annotations

import ipaddress
import os
import pty
import select
import subprocess
from pathlib import Path

import pytest

from tests.conftest import give, run_bubble
from tests.kernel.conftest import alive, bubble_cmd, native, parse_events, result_line

OPENAT, OPEN, RENAMEAT, MKDIRAT, UNLINKAT, CONNECT, EXECVE = 257, 2, 264, 258, 263, 42, 59
W_CREAT = "0x41"  # O_WRONLY|O_CREAT


def _denied_openat(path_arg: str) -> list[str]:
    return [str(OPENAT), "cwd", path_arg, W_CREAT, "0644"]


# --- bad pointers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pointer",
    ["null", "unmapped", "0x10", "0xffff800000000000", "0x7ffffffff000"],
    ids=["null", "unmapped-page", "low-page", "kernel-half", "top-of-user-space"],
)
def test_bad_path_pointer_is_an_event_field(probe, pointer):
    """A path pointer the kernel could not read is denied like any other write-open, the
    probe keeps running, and the event says the path was unreadable."""
    res = run_bubble([probe, "sys", *_denied_openat(pointer)])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    assert "ALIVE" in res.stdout
    [alert] = res.alerts
    assert alert["path"] == "<unreadable: EFAULT>"
    assert alert["flags"] == "O_WRONLY|O_CREAT"
    assert res.exit["exit_code"] == 0


@pytest.mark.parametrize("kind", ["edge", "span"])
def test_string_at_page_boundaries_read_exactly(probe, workdir, kind):
    """A path whose NUL is the last byte before a PROT_NONE page (edge), or which straddles
    two pages (span), is read whole: page-wise reads neither stop early nor fault."""
    path = f"{workdir}/{kind}-" + "x" * 40
    res = run_bubble([probe, "sys", *_denied_openat(f"{kind}:{path}")])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert alert["path"] == path
    assert not Path(path).exists()


def test_string_running_into_unmapped_page_survives(probe, workdir):
    """A path without NUL that runs into a PROT_NONE page: the call is denied, the probe
    lives, exactly one event, and the supervisor reads nothing past the mapping."""
    path = f"{workdir}/cut-path"
    res = run_bubble([probe, "sys", *_denied_openat(f"cut:{path}")])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    assert "ALIVE" in res.stdout
    [alert] = res.alerts
    assert alert["path"].startswith((path, "<unreadable")), alert["path"]
    assert res.exit["exit_code"] == 0


def test_string_running_into_unmapped_page_is_marked(probe, workdir):
    """The kernel would fail that call with EFAULT: the event must not present the readable
    prefix as the path the target used."""
    path = f"{workdir}/cut-path"
    res = run_bubble([probe, "sys", *_denied_openat(f"cut:{path}")])
    [alert] = res.alerts
    assert alert["path"] != path and "EFAULT" in alert["path"], alert["path"]


def test_overlong_path_read_is_bounded(probe, workdir):
    """A 20,000-byte path: denied, and the supervisor reads at most PATH_MAX of it."""
    path = f"{workdir}/" + "p" * 20_000
    res = run_bubble([probe, "sys", *_denied_openat(f"s:{path}")])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert path.startswith(alert["path"][:64]) and len(alert["path"]) <= 4096 + 64


def test_bad_second_path_and_sockaddr_pointers(probe, workdir):
    """Bad pointers in other roles: rename's new path, connect's address."""
    res = run_bubble([probe, "sys", "82", f"s:{workdir}/a", "unmapped"])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert (alert["path"], alert["path2"]) == (f"{workdir}/a", "<unreadable: EFAULT>")

    # An unreadable address is denied like any other.
    res = run_bubble([probe, "sys", str(CONNECT), "sock:1:1", "unmapped", "16"])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert alert["syscall"] == "connect" and alert["peer"] == "<unreadable: EFAULT>"


def test_exec_with_bad_argv_pointer(probe):
    """With --notify-exec, an execve whose argv is unreadable is still CONTINUEd (the kernel
    answers EFAULT itself), the probe lives, and the event records the unreadable argv."""
    res = run_bubble(
        [probe, "sys", str(EXECVE), "s:/bin/true", "unmapped", "null"], ["--notify-exec"]
    )
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EFAULT"
    assert "ALIVE" in res.stdout
    [spawn] = [e for e in res.of_type("process.spawn") if e.get("syscall") == "execve"][1:]
    assert spawn["exe"] == "/bin/true" and spawn["argv"] == ["<unreadable: EFAULT>"]
    assert not res.alerts


def test_caller_vanishing_mid_notification(probe):
    """Threads keep making denied calls while the process exits under them: some callers are
    gone before their answer. The run still ends cleanly with well-formed events."""
    res = run_bubble([probe, "vanish", "16", *_denied_openat("s:/tmp/bubble-vanish")], timeout=30)
    assert "VANISH 16" in res.stdout and res.rc == 0
    assert "Traceback" not in res.stderr
    assert len(res.alerts) >= 16
    assert all(a["syscall"] == "openat" for a in res.alerts)
    assert res.exit["exit_code"] == 0


# --- paths made absolute ---------------------------------------------------------------------
def test_relative_paths_resolved_against_cwd(probe, workdir):
    """Relative paths are reported against the caller's cwd (read through /proc/PID/cwd),
    with `.` and `..` folded."""
    sub = workdir / "sub"
    sub.mkdir()
    give(sub)
    cases = {
        "rel-new": f"{sub}/rel-new",
        "./dot-new": f"{sub}/dot-new",
        "../up-new": f"{workdir}/up-new",
    }
    for rel, expected in cases.items():
        res = run_bubble([probe, "sys", *_denied_openat(f"s:{rel}")], cwd=str(sub))
        assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
        [alert] = res.alerts
        assert alert["path"] == expected, rel
        assert not Path(expected).exists()


def test_dirfd_relative_paths_resolved(probe, workdir):
    """dirfd-relative paths are reported against the directory the fd names (read through
    /proc/PID/fd/N), each path against its own dirfd."""
    a, b = workdir / "a", workdir / "b"
    for d in (a, b):
        d.mkdir()
        give(d)
    (a / "f").write_text("x")
    res = run_bubble([probe, "sys", str(OPENAT), f"dfd:{a}", "s:new", W_CREAT, "0600"])
    assert res.alerts[0]["path"] == f"{a}/new"
    res = run_bubble([probe, "sys", str(RENAMEAT), f"dfd:{a}", "s:f", f"dfd:{b}", "s:g"])
    [alert] = res.alerts
    assert (alert["path"], alert["path2"]) == (f"{a}/f", f"{b}/g")
    assert (a / "f").exists() and not (b / "g").exists()
    res = run_bubble([probe, "sys", str(MKDIRAT), f"dfd:{b}", "s:../c", "0755"])
    assert res.alerts[0]["path"] == f"{workdir}/c"
    res = run_bubble([probe, "sys", str(UNLINKAT), f"dfd:{a}", "s:f", "0"])
    assert res.alerts[0]["path"] == f"{a}/f" and (a / "f").exists()


@pytest.mark.parametrize(
    "flags,symbolic",
    [
        ("0x241", "O_WRONLY|O_CREAT|O_TRUNC"),
        ("0x800c1", "O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC"),
        ("0x20402", "O_RDWR|O_APPEND|O_NOFOLLOW"),
        ("0x101801", "O_WRONLY|O_NONBLOCK|O_SYNC"),
        ("0x200", "O_RDONLY|O_TRUNC"),
    ],
)
def test_open_flags_are_symbolic(probe, workdir, flags, symbolic):
    """The alert spells the open flags the way open(2) names them."""
    target = workdir / "f"
    res = run_bubble([probe, "sys", str(OPEN), f"s:{target}", flags, "0600"])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert alert["flags"] == symbolic
    assert not target.exists()


def test_o_tmpfile_flag_named(probe, workdir):
    """O_TMPFILE (which carries O_DIRECTORY's bit) is named once, on the directory."""
    res = run_bubble([probe, "sys", str(OPENAT), "cwd", f"s:{workdir}", "0x410001", "0600"])
    [alert] = res.alerts
    assert alert["flags"] == "O_WRONLY|O_TMPFILE" and alert["path"] == str(workdir)
    assert alert["mode"] == 0o600
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    "addr,peer,port,family",
    [
        ("sa4:127.0.0.1:8080", "127.0.0.1", 8080, "AF_INET"),
        ("sa6:::1:443", "::1", 443, "AF_INET6"),
        ("sa6:::ffff:127.0.0.1:53", "127.0.0.1", 53, "AF_INET6"),  # shown as the IPv4 it reaches
    ],
    ids=["inet", "inet6", "v4-mapped"],
)
def test_sendto_address_decoded(probe, addr, peer, port, family):
    """sendto's destination is decoded (address, port, family) while the call is denied."""
    res = run_bubble([probe, "sys", "44", "sock:1:1", "s:hi", "2", "0", addr, "28"])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert ipaddress.ip_address(alert["peer"]) == ipaddress.ip_address(peer)
    assert (alert["port"], alert["family_name"]) == (port, family)
    assert alert["bytes"] == 2


def test_short_sockaddr_survives(probe):
    """An address shorter than its family needs: denied, decoded as far as it goes."""
    res = run_bubble([probe, "sys", str(CONNECT), "sock:1:1", "sa4:127.0.0.1:80", "4"])
    assert result_line(res.stdout) == "RESULT ret=-1 errno=EPERM"
    [alert] = res.alerts
    assert alert["family"] == 2 and "port" not in alert


# --- exec observation -------------------------------------------------------------------------
def test_exec_relative_path_and_argv_logged():
    """A relative exec path is reported absolute (against the caller's cwd), argv as passed,
    and the program really runs."""
    res = run_bubble(["/bin/sh", "-c", "cd /usr/bin && exec ./echo a 'b c'"], ["--notify-exec"])
    assert res.stdout == "a b c\n"
    [spawn] = [e for e in res.of_type("process.spawn") if e.get("argv", [""])[0] == "./echo"]
    assert spawn["exe"] == "/usr/bin/echo" and spawn["argv"] == ["./echo", "a", "b c"]


def test_exec_huge_argv_bounded_but_passed_whole():
    """An argv of 1,000 entries: the event is bounded, the program still gets all of it."""
    words = [f"w{i}" for i in range(1000)]
    res = run_bubble(["/bin/sh", "-c", 'exec /bin/echo "$@"', "sh", *words], ["--notify-exec"])
    assert res.stdout.split() == words
    [spawn] = [e for e in res.of_type("process.spawn") if e["exe"] == "/bin/echo"]
    assert spawn["argv"][:3] == ["/bin/echo", "w0", "w1"]
    assert len(spawn["argv"]) < len(words) and spawn["argv"][-1] == "<truncated>"


# --- load: one event per notification ----------------------------------------------------------
def test_500_threads_each_denied_once(probe, workdir):
    """500 threads each make one denied call: every call answered EPERM, one alert each,
    from 500 distinct thread ids."""
    target = workdir / "thr"
    res = run_bubble([probe, "threads", "500", *_denied_openat(f"s:{target}")], timeout=60)
    assert result_line(res.stdout, "THREADS") == "THREADS 500 same=500 errno=EPERM"
    assert len(res.alerts) == 500
    assert len({a["pid"] for a in res.alerts}) == 500
    assert all(a["path"] == str(target) for a in res.alerts)
    assert not target.exists() and res.exit["exit_code"] == 0


def test_flood_of_100000_denied_calls(probe, workdir):
    """100,000 denied calls in a row: all answered EPERM, all recorded, no crash, no hang."""
    n = 100_000
    res = run_bubble([probe, "flood", str(n), *_denied_openat(f"s:{workdir}/f")], timeout=100)
    assert result_line(res.stdout, "FLOOD") == f"FLOOD {n} same={n} errno=EPERM"
    assert len(res.alerts) == n
    assert len(res.events) == n + 2  # launcher.start + alerts + process.exit
    assert res.exit["exit_code"] == 0 and "Traceback" not in res.stderr


def test_signal_storm_gives_one_event_per_call(probe, workdir):
    """WAIT_KILLABLE_RECV: a 1 ms interval timer with an SA_RESTART handler interrupts the
    target while its calls wait for answers; each call still yields exactly one event (a
    restart must not produce a duplicate) and each is answered EPERM."""
    res = run_bubble([probe, "itimer", "200", *_denied_openat(f"s:{workdir}/f")], timeout=60)
    line = result_line(res.stdout, "ITIMER")
    fields = dict(part.split("=") for part in line.split()[1:])
    calls = int(fields["calls"])
    assert int(fields["ticks"]) >= 200 and fields["errno"] == "EPERM"
    assert int(fields["same"]) == calls
    assert len(res.alerts) == calls
    assert not [m for m in res.of_type("sandbox.msg") if "KILLABLE" in m["message"]]


# --- process trees ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["fork", "vfork", "clone3", "spawn"])
def test_children_inherit_the_filter(probe, workdir, how):
    """Children made by fork, vfork, clone3 and posix_spawn are supervised: their denied call
    is answered EPERM and the alert carries the child's pid."""
    target = workdir / "child"
    res = run_bubble([probe, how, *_denied_openat(f"s:{target}")])
    lines = [line for line in res.stdout.splitlines() if line.startswith("RESULT")]
    assert lines[0] == "RESULT ret=-1 errno=EPERM", res.stdout  # the child's call
    child_pid = int(result_line(res.stdout, "CHILD").split()[1])
    [alert] = res.alerts
    assert alert["pid"] == child_pid and alert["pid"] != res.events[0]["pid"]
    assert "ALIVE" in res.stdout and not target.exists()


def test_orphan_supervised_until_it_ends(probe, workdir, tmp_path):
    """A grandchild orphaned by its parent's exit makes a denied call afterwards: it is
    denied and logged, and `bubble run` returns only after the orphan's last act."""
    target = workdir / "orphan"
    out = tmp_path / "stdout"
    events = tmp_path / "events"
    with out.open("w") as fh:
        proc = subprocess.run(
            bubble_cmd(
                [probe, "adopted", "300", *_denied_openat(f"s:{target}")], events=str(events)
            ),
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    # Read right when bubble returned: the orphan's final line must already be there.
    text = out.read_text()
    assert proc.returncode == 0, proc.stderr
    orphan_line = result_line(text, "ORPHAN pid=")
    orphan = int(orphan_line.split()[1].split("=")[1])
    assert orphan_line.endswith("RESULT ret=-1 errno=EPERM")
    assert f"ORPHAN-END pid={orphan}" in text
    assert text.index("PARENT-DONE") < text.index("ORPHAN pid="), (
        "the call came after the parent's exit"
    )
    evs = parse_events(events.read_text())
    [alert] = [e for e in evs if e["type"] == "policy.alert"]
    assert alert["pid"] == orphan and alert["path"] == str(target)
    assert not alive(orphan) and not target.exists()


# --- pseudo-devices under --deny-fs=1 ------------------------------------------------------------
PSEUDO_SCRIPTS = {
    "dev-null": "echo hidden >/dev/null; echo shown",
    "dev-stdout": "echo to-stdout >/dev/stdout",
    "dev-stderr": "echo to-stderr >/dev/stderr",
    "append-stdout": "echo appended >>/dev/stdout",
    "proc-self-fd-1": "echo via-proc-1 >/proc/self/fd/1",
    "proc-self-fd-2": "echo via-proc-2 >/proc/self/fd/2",
    "proc-pid-fd-1": "echo via-pid >/proc/$$/fd/1",
    "dev-fd-1": "echo via-dev-fd >/dev/fd/1",
    "dev-zero": "echo x >/dev/zero && echo zero-ok",
    "dev-full": "echo x >/dev/full; echo status=$?",
    "read-zero": "head -c 3 /dev/zero | od -An -c",
}


@pytest.mark.parametrize("name", PSEUDO_SCRIPTS)
def test_pseudo_devices_behave_natively(workdir, name):
    """Write-opens of pseudo-devices work under --deny-fs=1 exactly as without Bubble: same
    stdout, stderr and exit status as a native run, and no policy alert."""
    script = PSEUDO_SCRIPTS[name]
    res = run_bubble(["/bin/sh", "-c", script], cwd=str(workdir))
    # Natively as ourselves: the stdio pipes are ours, and a program can reopen its own stdio
    # (under Bubble the target gets a copy of its descriptor instead).
    ref = native(["/bin/sh", "-c", script], cwd=str(workdir), as_target_user=False)
    assert (res.stdout, res.stderr, res.rc) == (ref.stdout, ref.stderr, ref.returncode)
    assert not res.alerts, res.alerts


def test_dev_tty_without_a_terminal_fails_like_natively(workdir):
    """With no controlling terminal, opening /dev/tty fails as it does natively (ENXIO)."""
    script = "echo x >/dev/tty; echo status=$?"
    # New sessions on both sides: neither may inherit a terminal from whoever runs pytest.
    proc = subprocess.run(
        bubble_cmd(["/bin/sh", "-c", script], events="/dev/null"),
        capture_output=True,
        text=True,
        cwd=workdir,
        start_new_session=True,
        timeout=30,
    )
    ref = native(["setsid", "-w", "/bin/sh", "-c", script], cwd=str(workdir))
    assert "No such device or address" in ref.stderr
    assert (proc.stdout, proc.stderr, proc.returncode) == (ref.stdout, ref.stderr, ref.returncode)


def _on_a_terminal(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, bytes]:
    """Run `argv` in a new session whose controlling terminal is a fresh pty (stdin); stdout
    and stderr stay pipes. Returns the result and what reached the terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            ["setsid", "-c", *argv],
            stdin=slave,
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=30,
        )
        seen = b""
        # Everything was written before the run ended: drain what the pty holds.
        while select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        return proc, seen
    finally:
        os.close(master)
        os.close(slave)


def test_dev_tty_reaches_the_controlling_terminal(workdir):
    """With a controlling terminal, a write-open of /dev/tty works under --deny-fs=1 and the
    text reaches that terminal, not stdout."""
    script = "echo via-tty >/dev/tty; echo status=$?"
    proc, seen = _on_a_terminal(bubble_cmd(["/bin/sh", "-c", script], events="/dev/null"), workdir)
    assert proc.stdout == "status=0\n", proc.stderr
    assert b"via-tty" in seen


def test_dev_tty_after_setsid_fails_like_natively(workdir):
    """A process that left its session (setsid) has no terminal: natively /dev/tty gives
    ENXIO; under Bubble it must not get the launcher's terminal instead."""
    script = "setsid -w /bin/sh -c 'echo detached >/dev/tty; echo status=$?'"
    proc, seen = _on_a_terminal(bubble_cmd(["/bin/sh", "-c", script], events="/dev/null"), workdir)
    ref, ref_seen = _on_a_terminal(["/bin/sh", "-c", script], workdir)
    assert ref.stdout == "status=2\n" and ref_seen == b""
    assert b"detached" not in seen
    assert proc.stdout == ref.stdout


@pytest.mark.parametrize("via", ["/proc/self/fd/3", "/dev/fd/3"])
def test_reopening_read_only_fd_for_write_denied(workdir, via):
    """`/proc/self/fd/N` (N >= 3) is not a pseudo-device: reopening a read-only fd for
    writing through it would reach the file, so it is denied (a native run shows it would
    have written)."""
    victim = workdir / "victim"
    victim.write_text("original\n")
    give(victim)
    script = f"exec 3<{victim}; echo overwritten >{via}; echo status=$?"
    res = run_bubble(["/bin/sh", "-c", script], cwd=str(workdir))
    assert victim.read_text() == "original\n"
    assert "Operation not permitted" in res.stderr and res.stdout == "status=2\n"
    [alert] = res.alerts
    assert alert["path"] == via and alert["flags"] == "O_WRONLY|O_CREAT|O_TRUNC"
    ref = native(["/bin/sh", "-c", script], cwd=str(workdir))
    assert ref.stdout == "status=0\n" and victim.read_text() == "overwritten\n"
