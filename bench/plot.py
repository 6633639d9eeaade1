"""The ratios as one PNG: each bar is a measured ratio, each dashed line the target it meets
or misses. Ratios only: absolute times from these machines do not compare run to run."""

from __future__ import annotations

from pathlib import Path

from common import Row


def _bars(rows: list[Row]) -> list[tuple[str, float, float | None, bool | None]]:
    """(label, ratio, target line, met) for the rows worth plotting: the wall-clock verdicts
    of (a) plus the CPU one against the C floor, Bubble against native in (b), and (c)-(e)."""
    bars: list[tuple[str, float, float | None, bool | None]] = []
    for r in rows:
        wl = r.workload[:3]
        wall = "wall" in r.workload
        # (a): the comparison rows (no vs_native), not the per-runner row that repeats them.
        if wl == "(a)" and r.vs_ref is not None and r.runner == "bubble" and r.vs_native is None:
            if wall or r.ref == "C floor":
                limit = 3.0 if r.ref == "C floor" else 0.5 if "strace" in r.ref else None
                ref = r.ref.split(" -e")[0]
                kind = "wall" if wall else "CPU"
                bars.append((f"(a) {kind}: bubble / {ref}", r.vs_ref, limit, r.met))
        elif wl == "(a)" and r.runner.startswith("Python floor +") and wall:
            bars.append(("(a) wall: Python floor+event / C floor", r.vs_ref or 0, None, None))
        elif wl == "(b)" and r.runner.startswith("bubble") and r.vs_native is not None:
            name = r.workload.split(",")[0][4:]
            who = "bubble" if r.runner.startswith("bubble (") else "bubble, writes+net allowed"
            limit = None if "getppid" in name else 1.05
            bars.append((f"(b) {name}: {who}", r.vs_native, limit, r.met))
        elif wl == "(c)" and r.runner == "bubble" and r.vs_ref is not None:
            bars.append(("(c) start-up: bubble / firejail", r.vs_ref, 1.0, r.met))
        elif wl == "(c)" and r.runner.startswith("Python floor") and r.vs_ref is not None:
            bars.append(("(c) start-up: Python floor / firejail", r.vs_ref, None, None))
        elif wl == "(d)" and r.target:
            bars.append(("(d) SSE events/s ÷ 20,000", r.value / 20_000, 1.0, r.met))
        elif wl == "(e)":
            bars.append(("(e) first event ms ÷ 150", r.value / 150, 1.0, r.met))
    return bars


def plot(rows: list[Row], path: Path, title: str) -> bool:
    """Write the PNG; False if matplotlib is missing (the table still has every number)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on CI machines
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    bars = _bars(rows)
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(bars) + 1.6))
    colours = {True: "#3a9d5d", False: "#d1495b", None: "#8a8f98"}
    y = list(range(len(bars)))[::-1]
    ax.barh(y, [b[1] for b in bars], color=[colours[b[3]] for b in bars])
    for yi, (_label, value, limit, _met) in zip(y, bars, strict=True):
        ax.text(value * 1.03, yi, f"{value:.2f}x", va="center", fontsize=8)
        if limit is not None:
            ax.plot([limit, limit], [yi - 0.4, yi + 0.4], "k--", linewidth=1)
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log scale); dashed: target; green met, red missed, grey no target")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
