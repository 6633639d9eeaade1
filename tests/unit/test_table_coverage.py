"""The syscall table against the kernel headers: no mutating call is forgotten, no number is
wrong, and docs/syscalls.md is the table's own rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bubble.sandbox import tabledoc
from bubble.sandbox.syscalls import BY_NAME, EXCLUDED, TABLE

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
ROOT = Path(__file__).resolve().parents[2]

# Names that suggest a call changes files, the network, processes or the kernel.
MUTATING = re.compile(
    r"open|creat|unlink|rmdir|rename|mkdir|mknod|link|truncate|chmod|chown|utime|setxattr"
    r"|removexattr|write|mount|swap|acct|fallocate|copy_file|splice|sendfile|tee|sync|quota"
    r"|handle|bind|connect|send|socket|exec|ptrace|kexec|module|bpf|perf_event|key|userfault"
    r"|io_uring|reboot|hostname|domainname|settime|adjtime|pivot|chroot|setns|unshare|iopl"
    r"|ioperm|mq_|flock|memfd|fanotify|inotify|nfsservctl|uselib|vhangup|sysctl|process_vm"
    r"|pidfd|kill|sig|fsopen|fsconfig|fsmount|fspick|landlock|lookup_dcookie|setattr"
)


def header_syscalls() -> dict[str, int]:
    if not HEADER.exists():
        pytest.fail(f"{HEADER} is missing: `make test` installs it (apt-get install libc6-dev)")
    pairs = re.findall(r"#define __NR_(\w+)\s+(\d+)", HEADER.read_text())
    return {name: int(nr) for name, nr in pairs}


def test_every_mutating_syscall_is_mediated_or_excluded_with_a_reason():
    missing = sorted(
        n
        for n in header_syscalls()
        if MUTATING.search(n) and n not in BY_NAME and n not in EXCLUDED
    )
    assert not missing, f"add to syscalls.TABLE or EXCLUDED (with a reason): {missing}"


def test_exclusions_have_reasons_and_do_not_overlap_the_table():
    assert all(reason.strip() for reason in EXCLUDED.values())
    assert not set(EXCLUDED) & set(BY_NAME)


def test_numbers_match_the_headers():
    known = header_syscalls()
    wrong = {
        r.name: (r.nr, known[r.name]) for r in TABLE if r.name in known and known[r.name] != r.nr
    }
    assert not wrong, f"table number != header number: {wrong}"
    assert len({r.nr for r in TABLE}) == len(TABLE), "duplicate numbers"


def test_newer_than_headers_rows_are_above_the_header_range():
    known = header_syscalls()
    newest = max(known.values())
    for row in TABLE:
        if row.name not in known:
            assert row.nr > newest, f"{row.name} is missing from headers yet numbered {row.nr}"


def test_docs_are_generated_from_the_table():
    text = (ROOT / "docs" / "syscalls.md").read_text()
    assert text == tabledoc.render(), "run: python -m bubble.sandbox.tabledoc > docs/syscalls.md"
