"""The Behaviour view in Chromium: the issue's sample run through the real engine, then its
page shows the collapsible process tree (argv, end, alert count), the signatures with
severity linking to their evidence events, and the files/network summary."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests import behaviour_sample
from tests.conftest import AS_ROOT
from tests.web.helpers import LiveServer, wait_done

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("engine"),
    pytest.mark.skipif(not AS_ROOT, reason="process.end needs root (the process connector)"),
]


def test_behaviour_view_of_the_sample(site: LiveServer, page, shots: Path) -> None:
    with behaviour_sample.sample() as sample:
        body = {"cmd": [str(sample.script)], "permissions": {"network": True}, "trace_net": True}
        run_id = requests.post(f"{site.url}/api/runs", json=body, timeout=10).json()["id"]
        wait_done(site.url, run_id)
    page.goto(f"{site.url}/runs/{run_id}")
    page.wait_for_selector("#ptree .proc")
    # Signatures: severity, ATT&CK ids, evidence links.
    sigs = page.locator(".sig")
    titles = " | ".join(sigs.all_text_contents())
    for attack in behaviour_sample.ATTACK:
        assert attack in titles, titles
    cron = page.locator(".sig[data-rule=bubble_cron_write]")
    assert cron.locator(".sev").text_content() == "high"
    assert "denied" in cron.locator(".outcome").text_content()
    link = cron.locator(".evlink").first
    seq = link.get_attribute("data-seq")
    # The tree: every process, the SIGSEGV child with its signal, alert counts on nodes.
    procs = page.locator("#ptree details.proc")
    assert procs.count() == 5
    segv = page.locator("#ptree details.proc", has_text="kill -SEGV").last
    assert "killed by SIGSEGV (core dump refused)" in segv.locator(".end").first.text_content()
    chmod = page.locator("#ptree details.proc", has_text="chmod 777 /etc/passwd").last
    assert "2 alerts" in chmod.locator(".pill.alert").first.text_content()
    root = procs.first
    assert root.get_attribute("open") is not None
    root.locator("summary").first.click()  # collapsible
    assert root.get_attribute("open") is None
    assert not page.locator("#ptree details.proc", has_text="rm -f").last.is_visible()
    root.locator("summary").first.click()
    # Files and network tables.
    files = page.locator("#behaviour .btable").first.text_content()
    assert str(sample.cron) in files and "/etc/passwd" in files and str(sample.log) in files
    assert f"127.0.0.1:{sample.port}" in page.locator("#behaviour").text_content()
    # Tall enough that nothing scrolls: the page's sticky run bar stays off the view.
    page.set_viewport_size({"width": 1280, "height": 3000})
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#behaviour").screenshot(path=str(shots / "behaviour.png"))
    # The evidence link lands on the event in All Events.
    link.click()
    page.wait_for_selector(f'#ev-list [data-seq="{seq}"].flash')
    assert "/etc/cron.d/" in page.locator(f'#ev-list [data-seq="{seq}"]').text_content()
    ecs = page.get_attribute("#ecs-link", "href")
    resp = requests.get(site.url + ecs, timeout=10)
    assert resp.headers["Content-Disposition"].startswith("attachment;")
