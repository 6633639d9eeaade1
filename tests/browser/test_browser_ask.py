"""Ask mode in Chromium: a run started with "Ask me" shows each held call as a card with a
countdown; the analyst's Allow once lets the write happen (the file is on disk), and a held
write nobody answers is denied when the wait runs out (no file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import full_shot
from tests.web.helpers import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("engine")]


def start_asking(page, site: LiveServer, target: Path, wait_s: int) -> None:
    page.goto(site.url)
    page.fill("#cmd", f"/bin/sh -c 'echo held > {target}; echo end'")
    page.check("#p-ask")
    page.fill("#p-ask-timeout", str(wait_s))
    page.click("#run-btn")
    page.wait_for_selector(".ask-card .ask-buttons button")


def test_allow_once_from_the_page_writes_the_file(
    site: LiveServer, page, reachable_box: Path, shots: Path
) -> None:
    box = reachable_box  # the target may run as nobody
    target = box / "allowed.txt"
    start_asking(page, site, target, 30)
    card = page.locator(".ask-card")
    assert card.locator(".ask-what").text_content() == str(target)
    page.wait_for_function(
        "document.querySelector('.ask-countdown').textContent.startsWith('denied in')"
    )
    assert card.get_by_role("button", name="Always allow this path").count() == 1
    # The summary's badge follows the run (it was drawn from the queued record).
    assert page.text_content("#run-status") == "Running"
    assert "st-running" in page.get_attribute("#run-status", "class")
    full_shot(page, shots / "ask.png")
    assert not target.exists()  # held: nothing written yet
    card.get_by_role("button", name="Allow once").click()
    page.wait_for_selector(".ask-card.ask-allowed")
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    assert target.read_text() == "held\n"
    assert "allowed by analyst" in card.locator(".ask-state").text_content()
    assert page.text_content("#stdout") == "end\n"


def test_an_unanswered_held_write_is_denied_after_the_wait(
    site: LiveServer, page, reachable_box: Path
) -> None:
    box = reachable_box
    target = box / "ignored.txt"
    start_asking(page, site, target, 3)
    page.wait_for_selector(".ask-card.ask-denied", timeout=20_000)
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    assert not target.exists()
    assert "no answer in time" in page.locator(".ask-card .ask-state").text_content()
    assert page.locator(".ask-card button").count() == 0
