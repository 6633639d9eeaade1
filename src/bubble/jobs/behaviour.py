"""A stored run's behaviour report, computed from its stored events by `bubble.analysis`
(the module `bubble report` uses), so the CLI and the page tell the same story.

The rule set is loaded once per process (pySigma parses YAML in pure Python: ~0.1 s per
rule file set on this machine) and a finished run's report is kept in a small cache keyed by
its last seq; a run still in flight is recomputed on every request.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from bubble.analysis import ecs, report, signatures
from bubble.jobs import schema
from bubble.jobs.store import Store

_CACHE_SIZE = 16
_lock = threading.Lock()
_rulesets: dict[tuple[str, ...], signatures.RuleSet] = {}
_reports: OrderedDict[tuple[str, int], tuple[list[dict[str, Any]], dict[str, Any]]] = OrderedDict()


def ruleset(dirs: tuple[str, ...]) -> signatures.RuleSet:
    with _lock:
        found = _rulesets.get(dirs)
        if found is None:
            found = _rulesets[dirs] = signatures.load(dirs)
        return found


def iter_stored_events(store: Store, run_id: str) -> Iterator[dict[str, Any]]:
    """A stored run's events as objects, in seq order, read page by page (a line that does
    not parse is skipped): a 100,000-event run is never held whole by a caller that folds."""
    for _seq, data in store.iter_events(run_id):
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def build(
    store: Store, run: dict[str, Any], dirs: tuple[str, ...]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(clean events, report) of a stored run."""
    key = (run["id"], int(run.get("last_seq") or 0))
    done = run["status"] in schema.TERMINAL
    if done:
        with _lock:
            hit = _reports.get(key)
            if hit is not None:
                _reports.move_to_end(key)
                return hit
    events = report.clean(iter_stored_events(store, run["id"]))
    meta = {"command": run["command"], "command_line": run.get("command_line")}
    meta["policy"] = run.get("policy")
    rep = report.build(events, ruleset=ruleset(dirs), run=meta)
    rep["run"] |= {"id": run["id"], "status": run["status"], "done": done}
    if done:
        with _lock:
            _reports[key] = (events, rep)
            while len(_reports) > _CACHE_SIZE:
                _reports.popitem(last=False)
    return events, rep


def ecs_lines(events: list[dict[str, Any]], rep: dict[str, Any]) -> Iterator[str]:
    return ecs.ndjson(events, rep)
