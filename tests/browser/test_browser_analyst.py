"""The analyst's page in Chromium: which sample a run ran (name and sha256 in the history,
the summary and the title), a re-run from a permalink with another policy and no new pick,
Cancel (the tree ends, the run is `cancelled`, its events stay), floods shown as a few
pattern cards with the summary in reach, traced network traffic, and the small things."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bubble.jobs import schema
from bubble.jobs.ingest import EventSink
from tests.browser.conftest import full_shot
from tests.web.helpers import (
    LiveServer,
    add_stream_artifacts,
    finish_run,
    jobs_of,
    synthetic_run,
)

pytestmark = pytest.mark.browser

SCRIPT = b'#!/bin/sh\necho "sample says $1"\necho dropped > out.txt\n'


def wait_ended(page: object) -> None:
    page.wait_for_selector("body[data-run-state=ended]", state="attached")  # type: ignore[attr-defined]


def record(site: LiveServer, page: object) -> dict:
    run_id = page.url.rsplit("/", 1)[1]  # type: ignore[attr-defined]
    return requests.get(f"{site.url}/api/runs/{run_id}", timeout=5).json()


@pytest.mark.usefixtures("engine")
def test_upload_shows_name_and_sha256_then_reruns_with_another_policy(
    site: LiveServer, page, browser, tmp_path: Path, shots: Path
) -> None:
    sample = tmp_path / "dropper.sh"
    sample.write_bytes(SCRIPT)
    sha = hashlib.sha256(SCRIPT).hexdigest()
    page.goto(site.url)
    page.set_input_files("#file", str(sample))
    page.fill("#args", "'first run'")
    page.click("#upload-btn")
    wait_ended(page)
    first = record(site, page)
    assert first["sample"]["name"] == "dropper.sh" and first["sample"]["sha256"] == sha
    # Writes are denied: one fs card, nothing dropped.
    assert page.locator(".vcard.cat-fs").count() == 1
    assert page.text_content("#stdout") == "sample says first run\n"
    # Name and sha256: summary, history (not "./sample.sh"), and the page title.
    assert "dropper.sh" in page.text_content("#sum-sample")
    assert page.text_content("#sum-sha") == sha
    item = page.locator("#history-list .h-item").first
    assert "dropper.sh" in item.text_content() and sha[:16] in item.text_content()
    assert "./sample" not in item.locator(".h-cmd").text_content()
    assert "dropper.sh" in page.title()
    # The sample downloads under its original name.
    href = page.get_attribute("a.sample-dl", "href")
    got = requests.get(site.url + href, timeout=5)
    assert got.content == SCRIPT and "filename=dropper.sh" in got.headers["Content-Disposition"]

    # The permalink in a fresh browser: the form holds the sample and the whole policy.
    link = page.get_attribute("#permalink", "href")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    fresh = context.new_page()
    try:
        fresh.goto(site.url + link)
        wait_ended(fresh)
        assert "dropper.sh" in fresh.title()
        assert fresh.is_visible("#sample-row")
        assert fresh.text_content("#sample-name") == "dropper.sh"
        assert sha in fresh.text_content("#sample-sha")
        assert fresh.input_value("#args") == "'first run'"
        assert fresh.input_value("#cmd") == ""
        assert fresh.evaluate("document.getElementById('file').files.length") == 0
        # Another policy: writes allowed. Re-run, no file picked.
        fresh.check("#p-fswrite")
        fresh.fill("#args", "again")
        full_shot(fresh, shots / "rerun-after.png")
        fresh.click("#rerun-btn")
        fresh.wait_for_function(f"() => !location.pathname.endsWith('{first['id']}')")
        wait_ended(fresh)
        second = record(site, fresh)
        assert second["id"] != first["id"]
        assert second["upload_id"] == first["upload_id"]  # the same sample, not a new upload
        # Writes on go to a throwaway layer unless "layer" is unchecked (--fs-overlay's page).
        assert second["policy"]["permissions"]["fs_write"] == "overlay"
        assert second["sample"]["sha256"] == sha
        assert fresh.text_content("#stdout") == "sample says again\n"
        assert fresh.locator(".vcard.cat-fs").count() == 0
        assert "out.txt" in fresh.text_content("#summary-body")
        assert len(requests.get(f"{site.url}/api/runs", timeout=5).json()["runs"]) == 2
        full_shot(fresh, shots / "rerun-done.png")
    finally:
        context.close()


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z" and b"bubble" not in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.usefixtures("engine")
def test_cancel_ends_the_whole_tree_and_keeps_the_events(site: LiveServer, page) -> None:
    marker = "61.2345"  # a sleep length no other process uses
    page.goto(site.url)
    page.fill("#cmd", f"/bin/sh -c 'echo started; sleep {marker} & sleep {marker}; wait'")
    page.fill("#p-timeout", "120")
    page.click("#run-btn")
    page.wait_for_function(
        "() => document.getElementById('stdout').textContent.includes('started')"
    )
    deadline = time.monotonic() + 10
    while len(_pids_with(marker)) < 2:
        assert time.monotonic() < deadline, "the sleeps did not start"
        time.sleep(0.05)
    assert page.is_visible("#cancel-btn") and page.is_hidden("#rerun-btn")
    page.click("#cancel-btn")
    wait_ended(page)
    rec = record(site, page)
    assert rec["status"] == "cancelled"
    assert _pids_with(marker) == []  # the whole tree is gone, the background sleep too
    assert page.text_content("#run-status") == "Cancelled"
    assert page.text_content("#bar-status") == "cancelled"
    assert page.is_hidden("#cancel-btn") and page.is_visible("#rerun-btn")
    # The events so far are kept: the spawns, then the orchestrator's note.
    events = requests.get(f"{site.url}/api/runs/{rec['id']}/events?format=json", timeout=5).json()
    types = [e["type"] for e in events["events"]]
    assert "process.spawn" in types
    assert events["events"][-1].get("action") == "orchestrator.cancelled"
    assert "orchestrator.cancelled" in page.text_content("#ev-list")
    # Nothing left to cancel: 409 in the error shape.
    again = requests.delete(
        f"{site.url}/api/runs/{rec['id']}", headers={"Origin": site.url}, timeout=5
    )
    assert again.status_code == 409 and "already ended" in again.json()["error"]


@pytest.mark.usefixtures("engine")
def test_a_queued_run_is_not_live_and_cancels_at_once(site: LiveServer, page) -> None:
    # Both workers busy with sleeps: the next run waits in the queue.
    hdrs = {"Origin": site.url}
    busy = [
        requests.post(
            f"{site.url}/api/runs", json={"cmd": "sleep 30", "timeout": 60}, headers=hdrs, timeout=5
        ).json()["id"]
        for _ in range(2)
    ]
    try:
        page.goto(site.url)
        page.fill("#cmd", "/usr/bin/echo waited")
        page.click("#run-btn")
        page.wait_for_function("() => document.getElementById('live').textContent === 'queued'")
        time.sleep(1.5)  # the page polls; it must still not claim to be live
        assert page.text_content("#live") == "queued"
        assert "on" not in page.get_attribute("#live", "class")
        assert page.text_content("#bar-status") == "queued"
        page.click("#cancel-btn")
        wait_ended(page)
        assert record(site, page)["status"] == "cancelled"
        assert page.text_content("#stdout") == ""
    finally:
        for run_id in busy:
            requests.delete(f"{site.url}/api/runs/{run_id}", headers=hdrs, timeout=5)


ALERT = {
    "type": "policy.alert",
    "pid": 7,
    "category": "fs",
    "syscall": "openat",
    "syscall_no": 257,
    "reason": "errno",
    "denied": "EPERM",
    "flags": "O_WRONLY|O_CREAT|O_TRUNC",
    "mode": 438,
}
TIMES = "\u00d7"  # the count's sign on a card
DASH = "\u2013"  # between a group's first and last time


def flood_run(site: LiveServer, n: int) -> str:
    """A finished run of `n` denied writes to /tmp/x0 … /tmp/x{n-1} (the issue's flood)."""
    jobs = jobs_of(site.app)
    run_id = synthetic_run(site.app, 0, status=schema.RUNNING)
    jobs.store.update_run(
        run_id, command_line="python3 -c \"for i in range(100000): open(f'/tmp/x{i}', 'w')\""
    )
    sink = EventSink(jobs.store, jobs.hub, run_id)
    for lo in range(0, n, 5000):
        batch = [
            {
                "type": "policy.alert",
                "pid": 7,
                "category": "fs",
                "syscall": "openat",
                "syscall_no": 257,
                "reason": "errno",
                "denied": "EPERM",
                "path": f"/tmp/x{i}",
                "flags": "O_WRONLY|O_CREAT|O_TRUNC",
                "mode": 438,
            }
            for i in range(lo, min(n, lo + 5000))
        ]
        if lo + 5000 >= n:
            batch.append(
                {
                    "type": "process.exit",
                    "pid": 7,
                    "exit_code": 0,
                    "signal": None,
                    "duration_ms": 900,
                    "max_rss_kb": 9000,
                    "timed_out": False,
                }
            )
        sink.add(batch)
    finish_run(site.app, run_id)
    return run_id


def test_a_flood_of_100000_writes_is_a_handful_of_pattern_cards(
    site: LiveServer, page, shots: Path
) -> None:
    run_id = flood_run(site, 100_000)
    page.goto(f"{site.url}/runs/{run_id}")
    wait_ended(page)
    page.wait_for_function(
        "() => document.getElementById('ev-count').textContent === '100,001 events'",
        timeout=120_000,
    )
    cards = page.locator("#vio-list .vcard")
    assert cards.count() == 1
    card = cards.first
    assert card.get_attribute("data-pattern") == "/tmp/x{n}"
    assert card.locator(".v-count").text_content() == f"{TIMES}100,000"
    assert f" {DASH} " in card.locator(".v-time").text_content()  # first and last time
    # Expandable: the distinct paths, capped.
    card.locator("summary").click()
    assert card.locator(".g-list li code").count() == 50
    assert card.locator(".g-list code").first.text_content() == "/tmp/x0"
    # The summary is in reach: the page is short and the run bar stays on screen.
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2600, height
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    bar = page.locator("#runbar").bounding_box()
    assert bar is not None and 0 <= bar["y"] < 80
    assert page.text_content("#bar-status") == "completed"
    assert "100,001 events" in page.text_content("#bar-counts")
    page.evaluate("window.scrollTo(0, 0)")
    full_shot(page, shots / "flood-100k-after.png")


def test_allowed_traffic_is_traced_and_shown(
    site: LiveServer, page, engine: None, shots: Path
) -> None:
    got: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(100))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    page.goto(site.url)
    assert page.is_disabled("#p-trace") and not page.is_checked("#p-trace")
    page.check("#p-net")
    assert page.is_checked("#p-trace")  # on by default once the network is allowed
    page.fill("#p-peek", "16")
    page.fill(
        "#cmd",
        "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', "
        f"{port})); s.sendall(b'BEACON-1'); s.close()\"",
    )
    page.click("#run-btn")
    wait_ended(page)
    thread.join(10)
    listener.close()
    assert got == [b"BEACON-1"]
    rec = record(site, page)
    assert rec["policy"]["trace_net"] is True and rec["policy"]["peek_tx"] == 16
    assert page.is_visible("#network")
    connect = page.locator("#net-list .net-card[data-type='net.connect']")
    assert connect.count() == 1
    assert "127.0.0.1" in connect.text_content() and str(port) in connect.text_content()
    assert b"BEACON-1".hex() in page.text_content("#net-list")
    assert page.locator("#vio-list .vcard").count() == 0  # allowed, so no violation
    full_shot(page, shots / "network.png")
    # Re-opened, the form keeps trace and peek (a re-run no longer drops them).
    page.reload()
    wait_ended(page)
    assert page.is_checked("#p-trace") and page.input_value("#p-peek") == "16"


def test_small_confusions_are_gone(site: LiveServer, page, tmp_path: Path) -> None:
    # A negative timeout is refused with a message; nothing runs.
    page.goto(site.url)
    page.fill("#cmd", "/usr/bin/echo hi")
    page.fill("#p-timeout", "-3")
    page.click("#run-btn")
    page.wait_for_selector("#form-error:not([hidden])")
    assert "positive number of seconds" in page.text_content("#form-error")
    assert requests.get(f"{site.url}/api/runs", timeout=5).json()["runs"] == []
    # A permalink of a run that does not exist is a page that says so.
    missing = "12345678-1234-4234-9234-123456789abc"
    resp = page.goto(f"{site.url}/runs/{missing}")
    assert resp is not None and resp.status == 404
    # Chromium logs the 404 document itself as a console error: expected here, and only here.
    page.problems.errors[:] = [e for e in page.problems.errors if "status of 404" not in e]
    assert missing in page.text_content("#missing") and page.is_visible("#launch")
    # Artifact links are named; the summary has no unexplained "Offline mode".
    run_id = synthetic_run(site.app, 20, stdout=b"out\n")
    jobs = jobs_of(site.app)
    jobs.store.update_run(
        run_id,
        offline=True,
        fs_changes={
            "files": [],
            "modified": [],
            "deleted": [{"name": "sample.sh", "kind": "file", "size": 9}],
        },
    )
    add_stream_artifacts(site.app, run_id, stdout=b"out\n")
    page.goto(f"{site.url}/runs/{run_id}")
    wait_ended(page)
    assert page.text_content("a.artifact[data-kind=stdout]") == "stdout.txt (4 B)"
    assert page.text_content("a.artifact[data-kind=events]").startswith("events.ndjson (")
    assert "Offline" not in page.text_content("#summary-body")
    # Deleted files are on the page.
    assert "Deleted Files" in page.text_content("#summary-body")
    assert "sample.sh" in page.text_content("#summary-body")


def test_narrow_window_keeps_the_run_bar_and_form(site: LiveServer, browser, shots: Path) -> None:
    run_id = flood_run(site, 2000)
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{site.url}/runs/{run_id}")
        wait_ended(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.is_visible("#runbar") and page.is_visible("#p-trace")
        page.screenshot(path=str(shots / "narrow-run.png"), full_page=False)
    finally:
        context.close()


@pytest.fixture(autouse=True)
def _no_stray_env() -> Iterator[None]:
    # The sandboxed commands above must not see the test's proxy settings.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.lower().endswith("_proxy")}
    yield
    os.environ.update(saved)
