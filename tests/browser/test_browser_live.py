"""The page in Chromium with the real engine: violations and stdout appear while the
program still runs, a re-run with the network allowed loses its net card, an uploaded
script runs, a permalink re-renders a finished run, and hostile strings stay text."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.browser.conftest import full_shot
from tests.web.helpers import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("engine")]

PROBE = """\
import os, socket, sys, time
print("hello from the sandbox", flush=True)
try:
    open("blocked.txt", "w")
except OSError as e:
    print("write denied, errno", e.errno, flush=True)
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
except OSError as e:
    print("connect failed, errno", e.errno, flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
print("gate opened", flush=True)
"""


@pytest.fixture
def gate() -> Iterator[Path]:
    """A directory the sandboxed user can read, holding the probe; `open` lets it end."""
    path = Path(tempfile.mkdtemp(prefix="bubble-gate-"))
    os.chmod(path, 0o755)
    (path / "probe.py").write_text(PROBE)
    os.chmod(path / "probe.py", 0o644)
    yield path
    shutil.rmtree(path)


def api_status(site: LiveServer, page: object) -> dict:
    run_id = page.url.rsplit("/", 1)[1]  # type: ignore[attr-defined]
    return requests.get(f"{site.url}/api/runs/{run_id}", timeout=5).json()


def wait_ended(page: object) -> None:
    page.wait_for_selector("body[data-run-state=ended]", state="attached")  # type: ignore[attr-defined]


def test_cards_and_stdout_appear_before_the_program_ends(
    site: LiveServer, page, gate: Path, shots: Path
) -> None:
    page.goto(site.url)
    assert page.is_checked("#p-exec") and not page.is_checked("#p-net")
    assert page.is_disabled("#p-fsread") and page.is_checked("#p-fsread")
    page.fill("#cmd", f"python3 {gate}/probe.py {gate}/open")
    page.fill("#p-timeout", "60")
    start = time.perf_counter()
    page.click("#run-btn")
    page.wait_for_selector(".vcard")
    first_card = time.perf_counter() - start
    page.wait_for_selector(".vcard.cat-fs")
    page.wait_for_selector(".vcard.cat-net")
    page.wait_for_function("() => document.getElementById('stdout').textContent.includes('hello')")
    # Everything above arrived while the program is still waiting at the gate.
    assert api_status(site, page)["status"] == "running"
    assert "gate opened" not in page.text_content("#stdout")
    assert "on" in page.get_attribute("#live", "class")
    fs_card = page.text_content(".vcard.cat-fs")
    assert "openat" in fs_card and "EPERM" in fs_card and f"{gate}" not in fs_card
    assert "blocked.txt" in fs_card and "O_WRONLY" in fs_card
    (gate / "open").touch()
    wait_ended(page)
    assert "gate opened" in page.text_content("#stdout")
    assert page.text_content("#run-status") == "Completed"
    assert page.text_content("#run-exit") == "0"
    assert "ended" in page.text_content("#live")
    print(f"click -> first violation card: {first_card * 1000:.0f} ms")
    assert first_card < 5
    full_shot(page, shots / "run.png")

    # Allow the network and run again: the net card is gone, the fs card stays.
    page.check("#p-net")
    page.click("#run-btn")
    page.wait_for_function("() => document.body.dataset.runState === 'live'")
    wait_ended(page)
    assert page.locator(".vcard.cat-net").count() == 0
    assert page.locator(".vcard.cat-fs").count() == 1
    assert api_status(site, page)["policy"]["permissions"]["network"] is True
    assert page.locator("#history-list .h-item").count() == 2


def test_upload_and_run_a_script(site: LiveServer, page, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text('#!/bin/sh\necho "uploaded script says $1"\n')
    page.goto(site.url)
    page.set_input_files("#file", str(script))
    page.fill("#args", "'hi there'")
    page.click("#upload-btn")
    wait_ended(page)
    assert page.text_content("#stdout") == "uploaded script says hi there\n"
    assert page.text_content("#run-status") == "Completed"
    rec = api_status(site, page)
    assert rec["upload_id"] and rec["command"] == ["./sample.sh", "hi there"]


def test_permalink_re_renders_a_finished_run(site: LiveServer, page, browser, gate: Path) -> None:
    (gate / "open").touch()
    page.goto(site.url)
    page.fill("#cmd", f"python3 {gate}/probe.py {gate}/open")
    page.click("#run-btn")
    wait_ended(page)
    link = page.get_attribute("#permalink", "href")
    events = page.text_content("#ev-count")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    fresh = context.new_page()
    try:
        fresh.goto(site.url + link)
        wait_ended(fresh)
        assert fresh.text_content("#ev-count") == events
        assert fresh.locator(".vcard.cat-fs").count() == 1
        assert "hello from the sandbox" in fresh.text_content("#stdout")
        assert fresh.text_content("#run-id") == link.rsplit("/", 1)[1]
        assert fresh.input_value("#cmd") == f"python3 {gate}/probe.py {gate}/open"
        # The artifact links download what the run printed.
        href = fresh.get_attribute("a.artifact[data-kind=stdout]", "href")
        assert "hello from the sandbox" in requests.get(site.url + href, timeout=5).text
    finally:
        context.close()


def test_hostile_strings_are_shown_as_text(site: LiveServer, page) -> None:
    evil = "<img src=x onerror=alert(1)>"
    page.goto(site.url)
    page.fill("#cmd", f"""python3 -c "print('{evil}'); open('{evil}', 'w')" """)
    page.click("#run-btn")
    wait_ended(page)
    assert evil in page.text_content(".vcard.cat-fs")
    assert evil in page.text_content("#stdout")
    assert evil in page.text_content("#ev-list")
    assert evil in page.text_content("#summary-body")
    assert evil in page.text_content("#history-list")
    assert page.locator("img").count() == 0  # nothing was parsed as HTML
    assert page.problems.dialogs == []


def test_dropped_files_are_listed_with_sha256_and_download(
    site: LiveServer, page, shots: Path
) -> None:
    import hashlib

    content = b"dropped by the target\n"
    page.goto(site.url)
    page.check("#p-fswrite")
    page.fill(
        "#cmd",
        "python3 -c \"import socket; print('writing a file', flush=True); "
        "open('payload.txt', 'w').write('dropped by the target\\n'); "
        "socket.socket().connect(('127.0.0.1', 9))\"",
    )
    page.click("#run-btn")
    wait_ended(page)
    summary = page.text_content("#summary-body")
    assert "payload.txt" in summary
    assert hashlib.sha256(content).hexdigest() in summary
    assert page.locator(".vcard.cat-fs").count() == 0
    assert page.locator(".vcard.cat-net").count() == 1
    # The card says where the program wanted to go (the wall let it make its socket).
    assert page.text_content(".vcard.cat-net .v-intent") == "connect 127.0.0.1:9"
    assert page.locator("#ev-list .ev.cat-fs .ev-type", has_text="fs.drop").count() == 1
    href = page.get_attribute(".files a", "href")
    assert requests.get(site.url + href, timeout=5).content == content
    full_shot(page, shots / "dropped-files.png")


def test_throwaway_layer_is_the_default_and_its_changes_are_listed(
    site: LiveServer, page, shots: Path
) -> None:
    import hashlib

    victim = Path(tempfile.mkdtemp(prefix="bubble-victim-", dir="/tmp"))
    os.chmod(victim, 0o755)
    (victim / "notes.txt").write_bytes(b"host file\n")
    evil = f"{victim}-evil.txt"
    hostname = Path("/etc/hostname").read_bytes()
    try:
        page.goto(site.url)
        page.check("#p-fswrite")
        assert page.is_checked("#p-layer")  # the layer is on by default
        assert "real host" in page.text_content("#p-layer-box")
        page.fill(
            "#cmd",
            f"/bin/sh -c 'echo x > {evil}; rm -rf {victim}; echo y >> /etc/hostname; cat {evil}'",
        )
        page.click("#run-btn")
        wait_ended(page)
        summary = page.text_content("#summary-body")
        for path in (evil, "/etc/hostname", str(victim), f"{victim}/notes.txt"):
            assert path in summary
        assert hashlib.sha256(b"x\n").hexdigest() in summary
        assert "Deleted Files" in summary
        links = page.locator(".files li", has_text=evil).locator("a")
        assert requests.get(site.url + links.get_attribute("href"), timeout=5).content == b"x\n"
        # From outside: the host is as it was.
        assert not Path(evil).exists() and (victim / "notes.txt").read_bytes() == b"host file\n"
        assert Path("/etc/hostname").read_bytes() == hostname
        full_shot(page, shots / "overlay.png")
    finally:
        shutil.rmtree(victim, ignore_errors=True)


def test_dns_card_names_the_query(site: LiveServer, page) -> None:
    """A DNS query sent to 127.0.0.1:53 (inside the run's network wall) shows as
    "DNS beacon.example (A)" on its card."""
    labels = b"\x06beacon\x07example\x00"
    query = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x01\x00\x01"
    ).hex()
    page.goto(site.url)
    page.fill(
        "#cmd",
        f"python3 -c \"import socket; socket.socket(2, 2).sendto(bytes.fromhex('{query}'), "
        "('127.0.0.1', 53))\"",
    )
    page.click("#run-btn")
    wait_ended(page)
    assert page.text_content(".vcard.cat-net .v-intent") == "DNS beacon.example (A)"
