"""The least-privilege loop in Chromium, on real runs: a run denied a write and a loopback
connect; "Suggest a policy" fills an editable policy file; bad TOML typed there is refused
next to the text and starts nothing; "Re-run with this policy" runs the same command under
the edited policy and lands on the new run, which has no alert (the file is on disk, the
listener got the bytes). "Compare with…" picks a run in the history and shows what the two
tried differently, grouped by operation and place, target text shown as text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.web.helpers import LiveServer, wait_done
from tests.web.probe import Listener

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("engine")]
TIMES = "\u00d7"  # the page's multiplication sign before a count


def api(site: LiveServer, path: str) -> dict:
    return requests.get(f"{site.url}{path}", timeout=10).json()


def run_id_of(page) -> str:
    return page.url.rsplit("/", 1)[1]


def clip_shot(page, path: Path, *selectors: str) -> None:
    """A picture of the page from the top of the first element to the bottom of the last,
    with every card painted and the sticky header left at the top (not over the panels)."""
    page.evaluate(
        "() => { document.querySelector('.top').style.position = 'static';"
        " document.querySelectorAll('.ev, .vcard, .net-card')"
        ".forEach((e) => { e.style.contentVisibility = 'visible'; }); window.scrollTo(0, 0); }"
    )
    boxes = [page.locator(s).bounding_box() for s in selectors]
    top = min(b["y"] for b in boxes) - 8
    bottom = max(b["y"] + b["height"] for b in boxes) + 8
    right = max(b["x"] + b["width"] for b in boxes) + 8
    clip = {"x": 0, "y": top, "width": right, "height": bottom - top}
    page.screenshot(path=str(path), full_page=True, clip=clip)
    page.evaluate("() => { document.querySelector('.top').style.position = ''; }")


def test_suggest_edit_and_rerun_under_the_policy(
    site: LiveServer, page, box: Path, listener: Listener, shots: Path
) -> None:
    out = box / "out"
    page.goto(site.url)
    page.fill("#cmd", f"/usr/bin/python3 {box / 'probe.py'} {out} {listener.port}")
    page.click("#run-btn")
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    first = run_id_of(page)
    assert api(site, f"/api/runs/{first}")["counts"]["alerts"] == 2
    assert not (out / "made.txt").exists() and listener.got == []

    assert page.is_visible("#suggest-btn")
    page.click("#suggest-btn")
    page.wait_for_selector("#suggest-box:not([hidden])")
    text = page.input_value("#suggest-text")
    endpoint = f"127.0.0.1:{listener.port}"
    assert f'"{out}",  # 1 denied write: openat {out}/made.txt' in text
    assert f'"{endpoint}",  # 1 denied connect: connect {endpoint}' in text
    assert "2 scopes would have allowed" in page.text_content("#suggest-notes")
    assert page.text_content("#suggest-btn") == "Suggest again"
    clip_shot(page, shots / "suggest.png", "#violations", "#leastpriv")

    # Bad TOML: said next to the text, nothing started, still on the first run.
    page.fill("#suggest-text", "[fs]\nwrite = [")
    page.click("#suggest-rerun")
    page.wait_for_selector("#suggest-error:not([hidden])")
    assert "the policy is not valid TOML" in page.text_content("#suggest-error")
    assert run_id_of(page) == first
    assert len(api(site, "/api/runs")["runs"]) == 1
    # A scope the server refuses (relative) is refused the same way.
    page.fill("#suggest-text", '[fs]\nwrite = ["tmp/out"]')
    page.click("#suggest-rerun")
    page.wait_for_function(
        "() => document.querySelector('#suggest-error').textContent.includes('is not absolute')"
    )
    assert len(api(site, "/api/runs")["runs"]) == 1
    # The two refusals are the only resources that failed (Chromium logs each 400).
    assert len([e for e in page.problems.errors if "status of 400" in e]) == 2
    page.problems.errors[:] = [e for e in page.problems.errors if "status of 400" not in e]

    # The analyst's edit (a note of their own) and the re-run.
    page.fill("#suggest-text", text + "# reviewed: the build output and the local database\n")
    page.click("#suggest-rerun")
    page.wait_for_function("(id) => !location.pathname.endsWith(id)", arg=first)
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    second = run_id_of(page)
    rec = api(site, f"/api/runs/{second}")
    assert rec["counts"]["alerts"] == 0, rec["counts"]
    assert rec["command_line"] == api(site, f"/api/runs/{first}")["command_line"]
    assert rec["policy"]["scopes"] == {"fs": {"write": [str(out)]}, "net": {"connect": [endpoint]}}
    assert (out / "made.txt").read_text() == "made\n"
    assert listener.got == [b"ping"]
    assert page.is_visible("#vio-empty")
    scopes = page.text_content("#sum-scopes")
    assert str(out) in scopes and endpoint in scopes
    assert page.text_content("#stdout") == "write: allowed\nconnect: allowed\n"
    # The form holds the policy the new run ran under, so its Re-run keeps the scopes.
    assert "reviewed" in page.input_value("#p-scopes")
    assert page.get_attribute("#p-scopes-box", "open") is not None
    # The suggestion panel is reset for the new run.
    assert page.is_hidden("#suggest-box")

    # Opened afresh from its permalink, the run's scopes fill the form; Re-run keeps them.
    (out / "made.txt").unlink()
    page.goto(f"{site.url}/runs/{second}")
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    form = page.input_value("#p-scopes")
    assert form == f'[fs]\nwrite = ["{out}"]\n[net]\nconnect = ["{endpoint}"]\n', form
    assert page.text_content("#p-scopes-sum") == "● scoped"
    page.click("#rerun-btn")
    page.wait_for_function("(id) => !location.pathname.endsWith(id)", arg=second)
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    third = api(site, f"/api/runs/{run_id_of(page)}")
    assert third["policy"]["scopes"] == rec["policy"]["scopes"]
    assert third["counts"]["alerts"] == 0 and (out / "made.txt").exists()
    assert listener.got == [b"ping", b"ping"]


def test_compare_with_a_run_from_the_history(
    site: LiveServer, page, box: Path, listener: Listener, shots: Path
) -> None:
    out, probe = box / "out", box / "probe.py"
    a_cmd = f"/bin/sh -c 'echo a > {out}/a.txt; /usr/bin/python3 {probe} {out} {listener.port}'"
    b_cmd = (
        f"/bin/sh -c '/usr/bin/python3 {probe} {out} {listener.port}; echo b > {out}/b.txt;"
        f' echo c > "{out}/<b>bold</b>.txt"\''
    )
    ids = []
    for body in ({"cmd": a_cmd}, {"cmd": b_cmd, "policy": {"fs": {"write": [str(out)]}}}):
        resp = requests.post(f"{site.url}/api/runs", json=body, timeout=10)
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
        assert wait_done(site.url, ids[-1])["status"] == "completed"
    a, b = ids
    assert not (out / "a.txt").exists() and (out / "b.txt").exists()
    assert listener.got == []  # no connect scope: denied in both runs

    # A is the run on screen, B the one picked in the history.
    page.goto(f"{site.url}/runs/{a}")
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    page.click("#compare-btn")
    assert page.is_visible("#pick-hint")
    page.keyboard.press("Escape")  # changed their mind
    assert page.is_hidden("#pick-hint")
    assert page.get_attribute("#compare-btn", "aria-pressed") == "false"
    page.click("#compare-btn")
    page.click(f'#history-list li[data-run="{a}"] a')  # itself: nothing happens
    assert page.is_hidden("#compare") and run_id_of(page) == a
    page.click(f'#history-list li[data-run="{b}"] a')
    page.wait_for_selector("#compare .cmp-group")
    assert run_id_of(page) == a  # picking compares; it does not navigate
    assert page.is_hidden("#pick-hint")
    assert a_cmd in page.text_content("#compare .cmp-a")
    assert b_cmd in page.text_content("#compare .cmp-b")

    def rows(group: str) -> list[list[str]]:
        return page.eval_on_selector_all(
            f"#cmp-{group} tbody tr",
            "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))",
        )

    only_a, only_b, changed = rows("only_a"), rows("only_b"), rows("changed")
    at = re.sub(r"\d+", "#", str(out))  # digits in paths are a pattern (bubble diff)
    assert any(r[1] == f"{at}/a.txt" and r[2].startswith("denied") for r in only_a), only_a
    assert any(r[1] == f"{at}/b.txt" and r[2].startswith("allowed") for r in only_b), only_b
    assert any(
        r[1] == f"{at}/made.txt" and r[2:] == [f"denied {TIMES}1", f"allowed {TIMES}1"]
        for r in changed
    )
    # The target named a file "<b>bold</b>.txt": shown as text, never as markup.
    assert any(r[1] == f"{at}/<b>bold</b>.txt" for r in only_b), only_b
    assert page.locator("#compare b").count() == 0
    # Grouped by operation: the name is shown once per group, on its first row.
    ops = [r[0] for r in only_b]
    assert ops.count("openat") == 1 and ops[0] != ""
    assert page.text_content("#cmp-only_b .cmp-n") == str(len(only_b))
    clip_shot(page, shots / "compare.png", "#compare")
    page.click("#compare-close")
    assert page.is_hidden("#compare")
