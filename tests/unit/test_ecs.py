"""ECS documents: every field is an ECS field with the type the ECS reference (8.x) gives it,
or a custom `bubble.*` field; categorisation fields use the allowed values only."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest

from bubble.analysis import ecs, report, signatures

FIXTURE = Path(__file__).with_name("fixtures") / "behaviour.ndjson"

# Field -> type, as in the ECS field reference (elastic.co/docs/reference/ecs).
ECS_TYPES = {
    "@timestamp": "date", "message": "match_only_text", "ecs.version": "keyword",
    "event.kind": "keyword", "event.category": "keyword", "event.type": "keyword",
    "event.action": "keyword", "event.outcome": "keyword", "event.sequence": "long",
    "event.module": "keyword", "event.dataset": "keyword", "event.reason": "keyword",
    "event.severity": "long",
    "process.pid": "long", "process.parent.pid": "long", "process.executable": "keyword",
    "process.name": "keyword", "process.args": "keyword", "process.args_count": "long",
    "process.working_directory": "keyword", "process.start": "date", "process.end": "date",
    "process.exit_code": "long",
    "file.path": "keyword", "file.name": "keyword", "file.directory": "keyword",
    "file.target_path": "keyword", "file.mode": "keyword",
    "destination.ip": "ip", "destination.port": "long", "destination.domain": "keyword",
    "network.transport": "keyword", "network.type": "keyword",
    "dns.question.name": "keyword", "dns.question.type": "keyword",
    "user.name": "keyword", "error.message": "match_only_text",
    "rule.id": "keyword", "rule.name": "keyword", "rule.description": "keyword",
    "rule.ruleset": "keyword", "threat.framework": "keyword", "threat.technique.id": "keyword",
}  # fmt: skip
ALLOWED = {
    "event.kind": {"alert", "asset", "enrichment", "event", "metric", "state",
                   "pipeline_error", "signal"},
    "event.category": {"api", "authentication", "configuration", "database", "driver", "email",
                       "file", "host", "iam", "intrusion_detection", "library", "malware",
                       "network", "package", "process", "registry", "session", "threat",
                       "vulnerability", "web"},
    "event.type": {"access", "admin", "allowed", "change", "connection", "creation", "deletion",
                   "denied", "device", "end", "error", "group", "indicator", "info",
                   "installation", "protocol", "start", "user"},
    "event.outcome": {"failure", "success", "unknown"},
}  # fmt: skip
ARRAYS = {"event.category", "event.type", "process.args", "threat.technique.id"}
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def flatten(doc: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out


def check_type(field: str, kind: str, value) -> None:
    values = value if isinstance(value, list) else [value]
    assert isinstance(value, list) == (field in ARRAYS) or field.startswith("rule."), field
    for v in values:
        if kind == "long":
            assert isinstance(v, int) and not isinstance(v, bool), (field, v)
        elif kind == "date":
            assert isinstance(v, str) and DATE.match(v), (field, v)
        elif kind == "ip":
            ipaddress.ip_address(v)
        else:
            assert isinstance(v, str), (field, v)


@pytest.fixture(scope="module")
def docs():
    events = list(report.read_ndjson(FIXTURE))
    rep = report.build(events, ruleset=signatures.load())
    return [flatten(d) for d in ecs.documents(report.clean(events), rep)]


def test_every_field_is_ecs_or_custom_with_the_right_type(docs):
    for doc in docs:
        json.dumps(doc)
        for field, value in doc.items():
            if field.startswith("bubble."):
                continue
            assert field in ECS_TYPES, f"not an ECS field: {field}"
            check_type(field, ECS_TYPES[field], value)
            for v in value if isinstance(value, list) else [value]:
                if field in ALLOWED:
                    assert v in ALLOWED[field], (field, v)


def test_denials_are_failures_and_signature_evidence_is_an_alert(docs):
    cron = next(d for d in docs if d.get("file.path") == "/etc/cron.d/x")
    assert cron["event.outcome"] == "failure" and "denied" in cron["event.type"]
    assert cron["event.kind"] == "alert" and cron["rule.name"] == "Cron job written or changed"
    assert cron["threat.technique.id"] == ["T1053.003"]
    assert cron["event.category"] == ["file", "intrusion_detection"]
    conn = next(d for d in docs if d.get("event.action") == "connect")
    assert conn["destination.ip"] == "127.0.0.1" and isinstance(conn["destination.port"], int)
    assert conn["event.outcome"] == "success" and conn["network.transport"] == "tcp"
    segv = next(d for d in docs if d.get("bubble.signal_name") == "SIGSEGV")
    assert segv["event.type"] == ["end"] and segv["process.parent.pid"] > 0
    spawn = next(d for d in docs if d.get("process.name") == "chmod")
    assert spawn["process.args"] == ["chmod", "777", "/etc/passwd"]
    assert len(docs) == sum(1 for _ in FIXTURE.open())
