"""Real programs under the real filter.

When what a program does is allowed, it must behave exactly as natively: same stdout, stderr
and exit status as the same command run without Bubble, as the same user, in the same
directory, with the same environment. With --deny-fs=0 in a work directory, toolchains do real
work (gcc compiles a binary that runs, git commits, tar round-trips), checked from outside.
When what a program does is denied, it fails the way it fails on a read-only filesystem: an
error message, a non-zero status, nothing written, and an alert — no hang, no crash.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import give, run_bubble
from tests.kernel.conftest import SYSTEM_PYTHON, native, program_env

HELLO_C = '#include <stdio.h>\nint main(void) { puts("compiled ok"); return 3; }\n'
WARN_C = "int main(void) { int unused; return 0; }\n"

# name -> argv. Outputs must not depend on time, pids or who runs them.
SAME_AS_NATIVE: dict[str, list[str]] = {
    "sh-pipeline": ["/bin/sh", "-c", "for i in 3 1 2; do echo $i; done | sort | tr '\\n' ' '"],
    "sh-subshells-and-status": [
        "/bin/sh",
        "-c",
        "(exit 3); echo $?; x=$(echo inner); echo $x; false",
    ],
    "bash-features": [
        "/bin/bash",
        "-c",
        "declare -A m=([k]=v); echo ${m[k]} $((6*7)); "
        "printf '%05d\\n' 42; [[ abc == a* ]] && echo glob",
    ],
    "coreutils-text": [
        "/bin/sh",
        "-c",
        "sort /etc/shells | uniq | wc -l; head -c 64 /dev/zero | "
        "od -An -tx1 | sort -u; seq 1 10 | paste -sd+",
    ],
    "coreutils-files": [
        "/bin/sh",
        "-c",
        "sha256sum /etc/os-release; stat -c '%s %F' /etc/os-release;"
        " ls -d /usr/bin /etc; basename /usr/bin/env; cat /etc/os-release | wc -c",
    ],
    "ls-missing": ["/bin/ls", "/nonexistent-bubble-path"],
    "find-and-grep": [
        "/bin/sh",
        "-c",
        "find /etc/ssl -maxdepth 1 -type d | sort; "
        "grep -c '^root:' /etc/passwd; grep -q nomatch /etc/hostname; echo $?",
    ],
    "tar-through-a-pipe": ["/bin/sh", "-c", "tar cf - -C /etc os-release hostname | tar tf -"],
    "tar-to-stdout-bytes": [
        "/bin/sh",
        "-c",
        "tar cf - --mtime=@0 --owner=0 --group=0 --numeric-owner -C /etc os-release | sha256sum",
    ],
    "python-stdlib": [
        SYSTEM_PYTHON,
        "-c",
        "import hashlib, json, sys; print(json.dumps("
        "{'h': hashlib.sha256(b'x').hexdigest()[:12], 'v': sys.version_info[:2]}))",
    ],
    "python-subprocess-threads": [
        SYSTEM_PYTHON,
        "-c",
        "import subprocess, concurrent.futures as f;"
        " print(subprocess.run(['echo', 'child'], capture_output=True,"
        " text=True).stdout.strip()); "
        "print(sum(f.ThreadPoolExecutor(8).map(lambda i: i * i, range(100))))",
    ],
    "python-exception": [SYSTEM_PYTHON, "-c", "raise SystemExit('bye')"],
    "gcc-syntax-only": [
        "/bin/sh",
        "-c",
        "gcc -fsyntax-only -Wall -x c - <<'EOF'\n" + WARN_C + "EOF",
    ],
    "gcc-version": ["/usr/bin/gcc", "-dumpversion"],
    "git-version": ["/usr/bin/git", "--version"],
    "stdin-passthrough": ["/usr/bin/sort", "-r"],
}


@pytest.mark.parametrize("name", SAME_AS_NATIVE)
def test_same_as_native(workdir: Path, name: str):
    """An allowed workload produces exactly what it produces natively."""
    argv = SAME_AS_NATIVE[name]
    env = program_env(workdir)
    stdin = "b\na\nc\n"
    res = run_bubble(argv, cwd=str(workdir), env=env, input=stdin)
    ref = native(argv, cwd=str(workdir), env=env, input=stdin)
    assert (res.stdout, res.stderr, res.rc) == (ref.stdout, ref.stderr, ref.returncode)
    assert res.exit["exit_code"] == ref.returncode
    assert not [a for a in res.alerts if a["category"] == "fs"], res.alerts


def test_git_reads_an_existing_repository(workdir: Path):
    """git log/status/diff on a repository made natively by the target's user read the same
    under Bubble (reads are always allowed)."""
    env = program_env(workdir)
    setup = (
        "git init -q repo && cd repo && echo one >f && git add f && "
        "git -c user.name=t -c user.email=t@example.com commit -qm first && echo two >>f"
    )
    assert native(["/bin/sh", "-c", setup], cwd=str(workdir), env=env).returncode == 0
    argv = [
        "/bin/sh",
        "-c",
        "cd repo && git log --format=%s && git diff --stat && "
        "git status --short && git rev-list --count HEAD",
    ]
    res = run_bubble(argv, cwd=str(workdir), env=env)
    ref = native(argv, cwd=str(workdir), env=env)
    assert res.stdout == ref.stdout and res.rc == ref.returncode == 0
    assert "first" in res.stdout and " M f" in res.stdout


# --- --deny-fs=0: real work in a work directory ------------------------------------------------
def test_gcc_compiles_and_the_binary_runs(workdir: Path):
    """With writes allowed, gcc compiles (temporary files, assembler, linker, all of it) and
    the binary it wrote runs — natively and under Bubble alike."""
    give(_write(workdir / "hello.c", HELLO_C))
    env = program_env(workdir)
    res = run_bubble(
        ["/usr/bin/gcc", "-O1", "-o", "hello", "hello.c"],
        ["--deny-fs=0"],
        cwd=str(workdir),
        env=env,
    )
    assert res.rc == 0, res.stderr
    binary = workdir / "hello"
    assert binary.is_file() and binary.stat().st_mode & 0o111
    ran = subprocess.run([str(binary)], capture_output=True, text=True, timeout=10)
    assert (ran.stdout, ran.returncode) == ("compiled ok\n", 3)
    inside = run_bubble([str(binary)], cwd=str(workdir), env=env)
    assert (inside.stdout, inside.rc) == ("compiled ok\n", 3)
    paths = {e["path"] for e in res.of_type("fs.write")}
    assert str(binary) in paths, "the output file's creation must be logged"


def test_git_init_and_commit(workdir: Path):
    """With writes allowed, git init + add + commit work, and the commit is there when the
    repository is read from outside."""
    env = program_env(workdir)
    give(_write(workdir / "file.txt", "content\n"))
    script = (
        "git init -q . && git add file.txt && "
        "git -c user.name=Bubble -c user.email=b@example.com commit -qm 'sandboxed commit'"
    )
    res = run_bubble(["/bin/sh", "-c", script], ["--deny-fs=0"], cwd=str(workdir), env=env)
    assert res.rc == 0, res.stderr
    log = native(["git", "log", "--format=%s|%an", "--name-only"], cwd=str(workdir), env=env)
    assert [line for line in log.stdout.splitlines() if line] == [
        "sandboxed commit|Bubble",
        "file.txt",
    ]
    assert any(e["path"].startswith(f"{workdir}/.git/") for e in res.of_type("fs.write"))


def test_tar_creates_and_extracts(workdir: Path):
    """With writes allowed, tar creates an archive and extracts it elsewhere; the extracted
    tree equals the original, byte for byte."""
    src = workdir / "src"
    src.mkdir()
    give(src)
    for name, text in (("a.txt", "alpha\n"), ("b.bin", "\x00\x01" * 500)):
        give(_write(src / name, text))
    script = "tar cf a.tar src && mkdir out && tar xf a.tar -C out && tar tf a.tar | sort"
    res = run_bubble(
        ["/bin/sh", "-c", script], ["--deny-fs=0"], cwd=str(workdir), env=program_env(workdir)
    )
    assert res.rc == 0, res.stderr
    assert res.stdout.split() == ["src/", "src/a.txt", "src/b.bin"]
    for name in ("a.txt", "b.bin"):
        assert (workdir / "out" / "src" / name).read_bytes() == (src / name).read_bytes()


def test_python_writes_with_writes_allowed(workdir: Path):
    """Debian's python3 writes a file when writes are allowed."""
    code = "open('out.txt', 'w').write('from python\\n')"
    res = run_bubble(
        [SYSTEM_PYTHON, "-c", code], ["--deny-fs=0"], cwd=str(workdir), env=program_env(workdir)
    )
    assert res.rc == 0 and (workdir / "out.txt").read_text() == "from python\n"


# --- --deny-fs=1: graceful failure -------------------------------------------------------------
DENIED: dict[str, tuple[list[str], str]] = {
    "touch": (["touch", "new"], "new"),
    "mkdir": (["mkdir", "dir"], "dir"),
    "cp": (["cp", "f", "g"], "g"),
    "mv": (["mv", "f", "g"], "f"),
    "rm": (["rm", "f"], "f"),
    "ln-s": (["ln", "-s", "f", "link"], "link"),
    "chmod": (["chmod", "600", "f"], "f"),
    "truncate": (["truncate", "-s", "0", "f"], "f"),
    "sh-redirect": (["/bin/sh", "-c", "echo x >>f"], "f"),
    "tar-create": (["tar", "cf", "out.tar", "f"], "out.tar"),
    "tar-extract": (["/bin/sh", "-c", "tar cf - -C /etc hostname | tar xf -"], "hostname"),
    "git-init": (["git", "init", "-q", "repo"], "repo"),
    "python-open": ([SYSTEM_PYTHON, "-c", "open('new.txt', 'w')"], "new.txt"),
}


@pytest.mark.parametrize("name", DENIED)
def test_denied_write_fails_gracefully(workdir: Path, name: str):
    """A program whose write is denied reports "Operation not permitted" and exits non-zero,
    the directory is unchanged, and at least one fs alert names the path."""
    argv, path = DENIED[name]
    give(_write(workdir / "f", "keep\n"))
    before = _tree(workdir)
    res = run_bubble(argv, cwd=str(workdir), env=program_env(workdir), timeout=30)
    assert res.rc != 0
    assert "Operation not permitted" in res.stderr, res.stderr
    assert _tree(workdir) == before
    fs = [a for a in res.alerts if a["category"] == "fs"]
    assert any(a["path"].startswith(str(workdir / path)) for a in fs), fs
    assert res.exit["signal"] is None, "a denial must not crash the program"


def test_gcc_denied_fails_and_writes_nothing(workdir: Path):
    """gcc cannot create its temporary files: it stops with an error (libiberty aborts), no
    object or binary appears, and the alert names the temporary file it wanted."""
    give(_write(workdir / "hello.c", HELLO_C))
    res = run_bubble(
        ["/usr/bin/gcc", "-o", "hello", "hello.c"],
        cwd=str(workdir),
        env=program_env(workdir),
        timeout=60,
    )
    assert res.rc != 0
    assert "Operation not permitted" in res.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["hello.c"]
    assert any(a["category"] == "fs" and a["path"].startswith("/tmp/") for a in res.alerts)


# --- helpers ---------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """What a denied program could have changed: names, modes, sizes, contents."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (
            st.st_mode,
            st.st_size,
            p.read_bytes() if p.is_file() else b"",
        )
    return out


@pytest.fixture(autouse=True)
def _tools_present():
    missing = [t for t in ("gcc", "git", "tar", "curl") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing programs {missing}: add them to the Makefile's apt list")
