"""The one settings table: flags, environment and defaults agree, and the docs are its."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bubble.errors import UsageError
from bubble.jobs import settings
from bubble.jobs.model import JobsConfig
from bubble.web import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_table() -> None:
    assert (ROOT / "docs" / "settings.md").read_text() == settings.markdown(), (
        "regenerate: python -m bubble.jobs.settings > docs/settings.md"
    )


def parse(scope: str, argv: list[str]) -> dict:
    p = argparse.ArgumentParser()
    settings.add_arguments(p, scope)
    return vars(p.parse_args(argv))


def test_flag_beats_environment_beats_default() -> None:
    env = {"BUBBLE_QUEUE_URL": "redis://env/0", "BUBBLE_OUTPUT_CAP": "1M", "BUBBLE_API": "x"}
    values = settings.resolve(parse("worker", ["--queue-url", "redis://flag/0"]), env)
    assert values["queue_url"] == "redis://flag/0"
    assert values["output_cap"] == 1 << 20
    assert values["api_url"] == "x"
    assert values["concurrency"] == 1  # the table's default
    cfg = JobsConfig.from_settings(values)
    assert cfg.queue_url == "redis://flag/0" and cfg.output_cap == 1 << 20


def test_each_command_gets_its_own_flags() -> None:
    assert parse("serve", ["--port", "1", "--allow-host", "a", "--allow-host", "b"])[
        "allow_host"
    ] == ["a", "b"]
    with pytest.raises(SystemExit):
        parse("serve", ["--concurrency", "2"])
    with pytest.raises(SystemExit):
        parse("worker", ["--token", "t"])


def test_a_bad_value_names_the_flag_and_the_variable() -> None:
    with pytest.raises(UsageError, match=r"--heartbeat \(or BUBBLE_HEARTBEAT\) must be a number"):
        settings.resolve({}, {"BUBBLE_HEARTBEAT": "soon"})


def test_app_config_defaults_come_from_the_table() -> None:
    for s in settings.SETTINGS:
        if settings.SERVE in s.scope and s.name != "data_dir":
            assert DEFAULTS[s.config_key] == s.default, s.name
