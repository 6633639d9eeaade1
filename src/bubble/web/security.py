"""Request guards and response headers.

- `Host` must be one this server answers to (defeats DNS rebinding against a loopback
  server); `Origin` must be this server on state-changing requests (defeats CSRF).
- With a token configured (required for a non-loopback bind), every request needs it:
  `Authorization: Bearer T` for API clients, or the cookie `/login` sets for the page.
  A token has at least `MIN_TOKEN_LENGTH` characters; wrong tokens (at `/login` or as a
  Bearer header) are rate-limited per client address and in all.
- `Referrer-Policy: same-origin`: `no-referrer` made Chromium send `Origin: null` on every
  form POST, so the login form was refused by the origin check (issue 13). `/login` alone
  also accepts `Origin: null` when the browser itself says the request is same-origin
  (`Sec-Fetch-Site`, which a page cannot set); every other state change still needs a
  matching `Origin`.
- Every response carries a strict CSP (no inline script or style anywhere), nosniff and
  frame denial.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from urllib.parse import urlsplit

from flask import Flask, current_app, redirect, request
from werkzeug.wrappers import Response

from bubble.errors import UsageError
from bubble.web.errors import Forbidden, TooManyRequests, Unauthorized, error_response

COOKIE = "bubble_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without the token: the login form and what it needs.
OPEN_PATHS = ("/login", "/static/bubble.css", "/static/favicon.svg")
# 16 characters of secrets.token_urlsafe are 96 bits: out of reach of any guessing rate.
MIN_TOKEN_LENGTH = 16
TOKEN_HINT = "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
# Wrong tokens allowed per WINDOW seconds, per client address and from all clients.
FAILURES_PER_CLIENT = 10
FAILURES_IN_ALL = 100
WINDOW = 60.0

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


def _hostname(host: str) -> str:
    """`[::1]:8090` -> `::1`, `localhost:8090` -> `localhost`."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_token(token: str) -> None:
    """Refuse a token too short to withstand guessing."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise UsageError(
            f"the access token must have at least {MIN_TOKEN_LENGTH} characters", TOKEN_HINT
        )


class Throttle:
    """Counts wrong tokens in a sliding window, per client address and in all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        return times

    def check(self, client: str) -> None:
        """Raise 429 if `client` (or everyone together) failed too often lately."""
        now = time.monotonic()
        with self._lock:
            mine, everyone = self._recent(client, now), self._recent("*", now)
            if len(mine) < FAILURES_PER_CLIENT and len(everyone) < FAILURES_IN_ALL:
                if not mine:
                    del self._seen[client]  # bounded: only clients that failed are kept
                return
        raise TooManyRequests(
            "too many wrong tokens; wait a minute", f"at most {FAILURES_PER_CLIENT} a minute"
        )

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            self._recent("*", now).append(now)
            if len(self._seen) > 2 * FAILURES_IN_ALL:  # forget clients quiet for WINDOW
                for key in [k for k in self._seen if not self._recent(k, now)]:
                    del self._seen[key]


def _throttle() -> Throttle:
    found: Throttle = current_app.extensions["bubble.throttle"]
    return found


def _client() -> str:
    return request.remote_addr or "?"


def _same(offered: str, token: str) -> bool:
    return hmac.compare_digest(offered.encode(), token.encode())


def token_ok(token: str) -> bool:
    """True if the request presents `token` (Bearer header or the login cookie). A wrong
    Bearer token counts as a failure; a stale cookie (say, after a restart with a new
    token) does not, so that it cannot lock the page out of `/login`."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        _throttle().check(_client())
        if _same(auth[7:].strip(), token):
            return True
        _throttle().failed(_client())
        return False
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and _same(cookie, token)


def _check_host(allowed: frozenset[str] | None) -> None:
    if allowed is None:
        return
    if _hostname(request.host).lower() not in allowed:
        raise Forbidden(
            f"this server does not answer to the host {request.host!r}",
            "open it by the address it was started with, or start it with --allow-host",
        )


def _check_origin() -> None:
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if origin == "null" and request.path == "/login" and site == "same-origin":
        return  # a browser that hides the origin still marks its own form as same-origin
    if origin is None:
        # Not sent by older browsers on same-origin requests; Fetch Metadata still is.
        if (site or "same-origin") not in ("same-origin", "none"):
            raise Forbidden("cross-site request refused", "use the page served by Bubble")
        return
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != request.host.lower():
        raise Forbidden(
            f"cross-origin request from {origin!r} refused",
            "state-changing requests must come from the page served by Bubble",
        )


def init_app(app: Flask) -> None:
    token: str | None = app.config.get("TOKEN") or None
    app.extensions["bubble.throttle"] = Throttle()
    hosts = app.config.get("ALLOWED_HOSTS")
    allowed = None if hosts is None else frozenset(h.lower().strip("[]") for h in hosts)

    @app.before_request
    def guard() -> Response | None:
        _check_host(allowed)
        _check_origin()
        if token is None or request.path.startswith(OPEN_PATHS) or token_ok(token):
            return None
        if request.path.startswith("/api/") or request.method not in SAFE_METHODS:
            raise Unauthorized(
                "this server requires its access token",
                "send 'Authorization: Bearer <token>' or log in at /login",
            )
        return redirect("/login", code=303)

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.path.startswith("/api/") or request.path in ("/run", "/upload"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp


def login(token: str | None, offered: str) -> Response:
    """Answer a login form: set the cookie and go to the page, or refuse."""
    if token is None:
        return redirect("/", code=303)
    _throttle().check(_client())
    if not _same(offered, token):
        _throttle().failed(_client())
        return error_response("wrong token", "use the token the server was started with", 401)
    resp = redirect("/", code=303)
    resp.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure, path="/"
    )
    return resp
