"""(g) click → first violation card, measured inside a real Chromium (Playwright): the page
records `performance.now()` at the click on Run and when the first `.vcard` is painted into
the DOM. With the fork server and with cold launchers, interleaved, 5 runs each."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from common import BenchError, Row, median, ratio
from server import Server

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that would make the browser reach beyond this machine.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WL = "(g) click Run → first violation card (browser), ms"
CMD = "/bin/sh -c 'echo x > /etc/bubble-bench-card'"
# Resolves with the milliseconds from the click to the first card, measured by the page.
CLICK = """() => new Promise((resolve) => {
  const t0 = performance.now();
  const seen = new MutationObserver(() => {
    if (document.querySelector('.vcard')) { seen.disconnect(); resolve(performance.now() - t0); }
  });
  seen.observe(document.body, {childList: true, subtree: true});
  document.querySelector('#run-btn').click();
})"""


def _once(page: Any, url: str) -> float:
    page.goto(url)
    page.fill("#cmd", CMD)
    ms = float(page.evaluate(CLICK))
    page.wait_for_selector(".vcard.cat-fs")
    return ms


def measure(rounds: int = 5) -> list[Row]:
    if not os.access(CHROMIUM, os.X_OK):
        raise BenchError(f"{CHROMIUM} is missing (make deps-test installs chromium)")
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"fork": [], "cold": []}
    with (
        tempfile.TemporaryDirectory(prefix="bubble-bench-card-") as a,
        tempfile.TemporaryDirectory(prefix="bubble-bench-card-cold-") as b,
        Server(Path(a)) as fork,
        Server(Path(b), {"BUBBLE_FORK_SERVER": "0"}) as cold,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            for srv in (fork, fork, cold):  # warm-up: page assets, the fork server ready
                _once(page, srv.url + "/")
            for _ in range(rounds):  # interleaved
                times["fork"].append(_once(page, fork.url + "/"))
                times["cold"].append(_once(page, cold.url + "/"))
        finally:
            browser.close()
    med = {k: median(v) for k, v in times.items()}
    row = Row(WL, "browser, fork server", med["fork"], "ms", samples=times["fork"])
    row.vs_ref, row.ref = ratio(med["fork"], med["cold"]), "browser, cold launcher"
    row.target, row.met = "< 60 ms", med["fork"] < 60
    cold_row = Row(WL, "browser, cold launcher", med["cold"], "ms", samples=times["cold"])
    return [row, cold_row]
