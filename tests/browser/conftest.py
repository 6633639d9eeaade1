"""Browser fixtures: Debian's Chromium (never a downloaded browser) driven by Playwright
against a real waitress server on a free loopback port.

Screenshots go to $BUBBLE_SCREENSHOTS when set (e.g. `docs/screenshots`), else to the
test's temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.helpers import LiveServer, make_app
from tests.web.probe import box, listener  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # launch() gives every run a fresh, temporary user-data-dir.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class PageProblems:
    """JS errors, console errors and dialogs seen by a page: a test fails on any."""

    def __init__(self, page: object) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda err: self.errors.append(str(err)))  # type: ignore[attr-defined]
        page.on(  # type: ignore[attr-defined]
            "console", lambda m: m.type == "error" and self.errors.append(m.text)
        )

        def dialog(d: object) -> None:
            self.dialogs.append(d.message)  # type: ignore[attr-defined]
            d.dismiss()  # type: ignore[attr-defined]

        page.on("dialog", dialog)  # type: ignore[attr-defined]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(make_app(tmp_path / "data", WORKERS=2, MAX_TIMEOUT=120))
    yield server
    server.stop()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems = PageProblems(page)
    page.problems = problems
    yield page
    context.close()
    assert problems.dialogs == [], problems.dialogs
    assert problems.errors == [], problems.errors


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("BUBBLE_SCREENSHOTS")
    path = Path(target) if target else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def engine() -> None:
    from tests.web.conftest import _engine

    problem = _engine()
    if problem:
        pytest.skip(f"the sandbox engine does not run here: {problem}")


def full_shot(page: object, path: Path) -> None:
    """A full-page screenshot with every card painted: off-screen cards skip painting
    (`content-visibility: auto`), which a picture of the whole page would show as blanks."""
    page.evaluate(  # type: ignore[attr-defined]
        "document.querySelectorAll('.ev, .vcard, .net-card')"
        ".forEach((e) => { e.style.contentVisibility = 'visible'; })"
    )
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
