"""The results table (terminal and markdown), the machine description, and docs/benchmarks.md's
generated blocks. Only the blocks between `<!-- bench:NAME:begin/end -->` markers are
rewritten, so the hand-written reading of the numbers around them survives a re-run."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

from common import Row

HEAD = ("workload", "runner", "median", "vs native", "vs ref", "ref", "target", "met", "IQR")


def _num(x: float | None, unit: str = "") -> str:
    if x is None or x != x:
        return "-"
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"
    return f"{text} {unit}".rstrip()


def _cells(r: Row) -> list[str]:
    met = {True: "yes", False: "**NO**", None: ""}[r.met]
    noise = f"±{r.noise * 50:.0f} %" if r.noise is not None and r.noise == r.noise else ""
    return [
        r.workload,
        r.runner,
        _num(r.value, r.unit),
        _num(r.vs_native) + ("x" if r.vs_native is not None else ""),
        _num(r.vs_ref) + ("x" if r.vs_ref is not None else ""),
        r.ref,
        r.target,
        met,
        noise,
    ]


def terminal(rows: list[Row]) -> str:
    table = [list(HEAD)] + [_cells(r) for r in rows]
    table = [[c.replace("**", "") for c in line] for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEAD))]
    out, last = [], None
    for line in table:
        if line[0] != last and last is not None:
            out.append("")
        last = line[0]
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    notes = [f"  {r.workload} / {r.runner}: {r.note}" for r in rows if r.note]
    return "\n".join([*out, *(["", *sorted(set(notes))] if notes else [])]) + "\n"


def markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |")
    notes = sorted({f"- {r.workload} — {r.runner}: {r.note}" for r in rows if r.note})
    return "\n".join([*out, *(["", *notes] if notes else [])]) + "\n"


def _version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    done = subprocess.run(cmd, capture_output=True, text=True)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine() -> dict[str, str]:
    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    distro = "?"
    if os.path.exists("/etc/os-release"):
        m = re.search(r'PRETTY_NAME="([^"]*)"', Path("/etc/os-release").read_text())
        distro = m.group(1) if m else distro
    seccomp = _version(["dpkg-query", "-W", "-f", "${Version}", "libseccomp2"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu}, {os.cpu_count()} vCPU, {distro}, kernel {platform.release()}",
        "software": f"Python {platform.python_version()}, libseccomp {seccomp}, "
        f"{_version(['strace', '-V'])}, {_version(['firejail', '--version'])}",
        "load at the start": "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
        "user": "root (targets run as nobody)" if os.geteuid() == 0 else "unprivileged",
    }


def dump(rows: list[Row], path: Path, meta: dict[str, str]) -> None:
    path.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))


def update_docs(path: Path, blocks: dict[str, str]) -> None:
    """Replace each named generated block; a block the file lacks is appended at the end."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for name, body in blocks.items():
        begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
        block = f"{begin}\n{body.rstrip()}\n{end}"
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text)
        else:
            text = text.rstrip() + f"\n\n{block}\n"
    path.write_text(text)
