"""The ways a workload is run: natively, under Bubble, under the C floor, strace and firejail.

A runner turns a workload's argv into the command line that runs it its way. Runners that
write events write them to a file in bench/out, so the cost of recording each decision is
part of the measurement (the brief's "full events"); the file is checked afterwards so a run
that silently recorded nothing cannot pass as a fast one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import BENCH, BUBBLE, OUT, PYTHON, Tools

EVENTS = OUT / "events.ndjson"


@dataclass(frozen=True)
class Runner:
    name: str
    label: str  # what the table and the docs call it
    wrap: Callable[[list[str]], list[str]]
    needs: tuple[str, ...] = ()  # programs that must be installed
    events: Path | None = None  # where this runner's events go, to be checked

    def missing(self) -> str | None:
        for prog in self.needs:
            if shutil.which(prog) is None:
                return f"{prog} not installed"
        return None

    def cmd(self, argv: list[str]) -> list[str]:
        return self.wrap(argv)


def native() -> Runner:
    return Runner("native", "native", list)


def bubble(*flags: str, name: str = "bubble", label: str = "bubble") -> Runner:
    """`bubble run` with events to a file. `flags`: policy flags (e.g. --keep-root, so an
    allowed workload runs as the same user as natively and reads the same files)."""
    return Runner(
        name,
        label,
        lambda argv: [BUBBLE, "run", "--events", str(EVENTS), *flags, "--", *argv],
        events=EVENTS,
    )


def floor(tools: Tools) -> Runner:
    return Runner("floor", "C floor (answer only)", lambda argv: [tools.floor, "--", *argv])


def floor_event(tools: Tools) -> Runner:
    events = OUT / "floor-events.ndjson"
    return Runner(
        "floor+event",
        "C floor + path read + event",
        lambda argv: [tools.floor, "-e", str(events), "--", *argv],
        events=events,
    )


def pyfloor(events: bool = False) -> Runner:
    """pyfloor.py: the same protocol as the C floor in the plainest fast Python."""
    script = str(BENCH / "pyfloor.py")
    if not events:
        return Runner("pyfloor", "Python floor (answer only)", lambda a: [PYTHON, script, "--", *a])
    path = OUT / "pyfloor-events.ndjson"
    return Runner(
        "pyfloor+event",
        "Python floor + path read + event",
        lambda argv: [PYTHON, script, "-e", str(path), "--", *argv],
        events=path,
    )


def kernel_deny(tools: Tools) -> Runner:
    """SECCOMP_RET_ERRNO in the kernel, no supervisor and no event: what a static seccomp
    profile (firejail's, Docker's) pays for a denial. Shown for scale only."""
    return Runner(
        "kernel", "in-kernel ERRNO (no event)", lambda argv: [tools.floor, "-k", "--", *argv]
    )


def strace(calls: str, bpf: bool) -> Runner:
    """strace following forks, writing its log to /dev/null. Without --seccomp-bpf it stops
    the tracee at every syscall and filters afterwards; with it, only at `calls`."""
    extra = ["--seccomp-bpf"] if bpf else []
    return Runner(
        "strace-bpf" if bpf else "strace",
        f"strace -f{' --seccomp-bpf' if bpf else ''} -e trace={calls}",
        lambda argv: [
            "strace",
            "-f",
            "-qq",
            *extra,
            "-e",
            f"trace={calls}",
            "-o",
            "/dev/null",
            *argv,
        ],
        needs=("strace",),
    )


def firejail() -> Runner:
    """firejail without a profile: its start-up and namespaces, but no seccomp filter (the
    getppid loop in (b) runs at native speed under it): its (c) is a launcher's floor."""
    return Runner(
        "firejail",
        "firejail --noprofile",
        lambda argv: ["firejail", "--quiet", "--noprofile", *argv],
        needs=("firejail",),
    )


def bwrap() -> Runner:
    """bubblewrap with the host read-only and fresh namespaces: another launcher's floor."""
    return Runner(
        "bwrap",
        "bwrap --unshare-all",
        lambda argv: ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--", *argv],
        needs=("bwrap",),
    )


def available(runners: list[Runner], skipped: dict[str, str]) -> list[Runner]:
    """The runners we can use here; the others go to `skipped` with the reason."""
    usable = []
    for r in runners:
        why = r.missing()
        if why:
            skipped[r.label] = why
        else:
            usable.append(r)
    return usable


def count_events(path: Path, kind: str = '"type":"policy.alert"') -> int:
    """Lines of one event type in an NDJSON file (a substring test: fast on 200k lines)."""
    with open(path, "rb") as fh:
        needle = kind.encode()
        return sum(1 for line in fh if needle in line)
