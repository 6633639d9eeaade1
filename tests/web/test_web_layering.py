"""DESIGN §1: `jobs` imports only the leaves, never `sandbox` or `web`; `web` never imports
`sandbox` (it starts the launcher through `jobs`, as a subprocess)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "bubble"
LEAVES = {
    "bubble.policy",
    "bubble.events",
    "bubble.errors",
    "bubble.eventline",
    "bubble.scopes",
    "bubble.filekind",
}


def bubble_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n.startswith("bubble")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bubble")}
    return found


@pytest.mark.parametrize("path", sorted((SRC / "jobs").glob("*.py")), ids=lambda p: p.name)
def test_jobs_imports_only_leaves_and_itself(path: Path) -> None:
    for name in bubble_imports(path):
        top = ".".join(name.split(".")[:2])
        allowed = top in LEAVES or top in ("bubble.jobs", "bubble.analysis")
        assert allowed or name == "bubble", (path.name, name)


@pytest.mark.parametrize("path", sorted((SRC / "analysis").glob("*.py")), ids=lambda p: p.name)
def test_analysis_imports_only_leaves_and_itself(path: Path) -> None:
    """The report is pure functions over events: the CLI, the orchestrator and the web use
    the same module, and none of it can touch the sandbox."""
    for name in bubble_imports(path):
        top = ".".join(name.split(".")[:2])
        assert top in LEAVES or top == "bubble.analysis" or name == "bubble", (path.name, name)


def test_leaves_import_no_other_layer() -> None:
    for leaf in LEAVES:
        path = SRC / f"{leaf.split('.')[1]}.py"
        for name in bubble_imports(path):
            assert ".".join(name.split(".")[:2]) in LEAVES or name == "bubble", (path.name, name)


@pytest.mark.parametrize("path", sorted((SRC / "web").glob("*.py")), ids=lambda p: p.name)
def test_web_never_imports_the_sandbox(path: Path) -> None:
    assert not any(n.startswith("bubble.sandbox") for n in bubble_imports(path)), path.name
