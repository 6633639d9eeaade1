"""Shared pieces: where things are, building the C helpers, timing a command, result rows.

Every number the suite reports is a median over interleaved rounds, and every verdict is a
ratio between runners measured side by side: the development machines are shared 2-vCPU VMs
where absolute times move by ±40 % from one minute to the next.
"""

from __future__ import annotations

import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"  # gitignored: compiled helpers, temp files, the plot
PYTHON = sys.executable
BUBBLE = str(Path(PYTHON).parent / "bubble")  # the console script a user types
PROBE_SRC = ROOT / "tests" / "probes" / "probe.c"

# Users' launches run from cached bytecode. With PYTHONDONTWRITEBYTECODE inherited (some shells
# and CI images set it), a fresh checkout or an exported commit would compile every module on
# every start and add ~30 ms to each `bubble run`: start-up would measure the compiler.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


class BenchError(RuntimeError):
    """A run did not do what the workload assumes: its timing would measure something else."""


@dataclass(frozen=True)
class Tools:
    probe: str
    floor: str
    allowed: str


def _compile(src: Path, dest: Path, libs: list[str]) -> str:
    if dest.exists() and dest.stat().st_mtime >= src.stat().st_mtime:
        return str(dest)
    cmd = ["gcc", "-O2", "-Wall", "-o", str(dest), str(src), *libs]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        hint = " (apt-get install libseccomp-dev)" if "seccomp.h" in done.stderr else ""
        raise BenchError(f"compiling {src.name} failed{hint}:\n{done.stderr}")
    return str(dest)


def build() -> Tools:
    """Compile the probe and the benchmark's own C helpers into bench/out (never committed)."""
    if shutil.which("gcc") is None:
        raise BenchError("gcc is missing: `make bench` installs it (apt-get install gcc)")
    OUT.mkdir(exist_ok=True)
    OUT.chmod(0o755)  # the sandboxed target runs as nobody when we are root: it must exec these
    return Tools(
        probe=_compile(PROBE_SRC, OUT / "probe", ["-lpthread"]),
        floor=_compile(BENCH / "floor.c", OUT / "floor", ["-lseccomp"]),
        allowed=_compile(BENCH / "allowed.c", OUT / "allowed", []),
    )


@dataclass(frozen=True)
class Done:
    wall: float  # seconds
    cpu: float  # seconds of user+sys CPU of the command and every descendant it waited for
    stdout: str


def use_commit(rev: str) -> str:
    """Benchmark the package as committed at `rev` instead of the working tree (which other
    engineers may be editing mid-run): export its src/ into bench/out and put it first on
    PYTHONPATH for every command the suite starts. Returns the commit's hash."""
    git = ["git", "-C", str(ROOT)]
    found = subprocess.run(
        [*git, "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True
    )
    if found.returncode != 0:
        raise BenchError(f"--commit {rev}: not a commit of this repository")
    sha = found.stdout.decode().strip()
    dest = OUT / f"src-{sha[:12]}"
    if not dest.exists():
        OUT.mkdir(exist_ok=True)
        archive = subprocess.run(
            [*git, "archive", sha, "src"], capture_output=True, check=True
        ).stdout
        dest.mkdir()
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        # Compile once now, as an installed package would be, instead of in the first runs.
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(dest / "src")], check=True)
    os.environ["PYTHONPATH"] = str(dest / "src")
    check = [PYTHON, "-c", "import bubble; print(bubble.__file__)"]
    where = subprocess.run(check, capture_output=True, text=True, check=True).stdout
    if str(dest) not in where:
        raise BenchError(f"PYTHONPATH did not take precedence: bubble from {where.strip()}")
    return sha


def source_state() -> str:
    """What is being measured: the commit, and whether src/ differs from it."""
    if "PYTHONPATH" in os.environ and "/src-" in os.environ["PYTHONPATH"]:
        return "commit " + os.environ["PYTHONPATH"].split("/src-")[1].split("/")[0]
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    state = "with uncommitted changes in src/" if dirty.stdout.strip() else "clean"
    return f"working tree at {head.stdout.strip()} ({state})"


def run(argv: list[str], expect: str | None = None, timeout: float = 300) -> Done:
    """Run `argv` once, timed. With `expect` (a regex), stdout is captured and must match: a
    flood that was not denied, or a loop whose calls failed, is an error, not a fast result.
    Output we do not check goes to /dev/null so that no pipe slows the program.

    CPU time comes from RUSAGE_CHILDREN around the run (the suite runs one command at a time);
    it grows far less than wall-clock time while a neighbour holds the CPU (though a busy
    hyperthread sibling or hypervisor steal still shows in it)."""
    out = subprocess.PIPE if expect else subprocess.DEVNULL
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv)}\n  still running after {timeout:g} s") from None
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = done.stdout.decode(errors="replace") if expect else ""
    if done.returncode != 0 or (expect and not re.search(expect, text)):
        raise BenchError(
            f"{' '.join(argv)}\n  exit {done.returncode}; stdout {text[-300:]!r}; "
            f"stderr {done.stderr.decode(errors='replace')[-600:]!r}"
        )
    return Done(elapsed, cpu, text)


def timed(argv: list[str], expect: str | None = None, timeout: float = 300) -> float:
    """Wall-clock seconds of one checked run (see `run`)."""
    return run(argv, expect, timeout).wall


def interleave(
    jobs: dict[str, Callable[[], float]], rounds: int, seed: int = 5
) -> dict[str, list[float]]:
    """Run every job once per round, in a fresh random order each round, so that a burst of
    load from a neighbour hits all runners alike instead of whichever happened to be next."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    names = list(jobs)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            samples[name].append(jobs[name]())
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> float:
    """Interquartile range relative to the median: how noisy this runner was."""
    if len(values) < 4:
        return (max(values) - min(values)) / median(values) if values else float("nan")
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / median(values)


@dataclass
class Row:
    """One line of the results table."""

    workload: str  # "a", "b", ... plus a short name
    runner: str
    value: float  # the median, in `unit`
    unit: str
    vs_native: float | None = None
    vs_ref: float | None = None  # ratio against `ref` (the C floor, strace, firejail ...)
    ref: str = ""
    target: str = ""
    met: bool | None = None  # None: no target for this row
    noise: float | None = None  # IQR / median of the samples
    note: str = ""
    samples: list[float] = field(default_factory=list)
    # min(samples) / min(native samples): noise on a shared VM only ever adds time, so the
    # best of N is the steadiest estimate of the intrinsic cost; the CI checks use it.
    best_vs_native: float | None = None


def ratio(a: float, b: float) -> float | None:
    return a / b if b and b > 0 else None
