"""Request guards and response headers.

- `Host` must be one this server answers to (defeats DNS rebinding against a loopback
  server); `Origin` must be this server on state-changing requests (defeats CSRF).
- With a token configured (required for a non-loopback bind), every request needs it:
  `Authorization: Bearer T` for API clients, or the cookie `/login` sets for the page.
- Every response carries a strict CSP (no inline script or style anywhere), nosniff and
  frame denial.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import Flask, redirect, request
from werkzeug.wrappers import Response

from bubble.web.errors import Forbidden, Unauthorized, error_response

COOKIE = "bubble_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without the token: the login form and what it needs.
OPEN_PATHS = ("/login", "/static/bubble.css", "/static/favicon.svg")

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


def token_ok(token: str) -> bool:
    """True if the request presents `token` (Bearer header or the login cookie)."""
    auth = request.headers.get("Authorization", "")
    offered = auth[7:].strip() if auth[:7].lower() == "bearer " else request.cookies.get(COOKIE)
    return offered is not None and hmac.compare_digest(offered.encode(), token.encode())


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
    if origin is None:
        # Not sent by older browsers on same-origin requests; Fetch Metadata still is.
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
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
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.path.startswith("/api/") or request.path in ("/run", "/upload"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp


def login(token: str | None, offered: str) -> Response:
    """Answer a login form: set the cookie and go to the page, or refuse."""
    if token is None:
        return redirect("/", code=303)
    if not hmac.compare_digest(offered.encode(), token.encode()):
        return error_response("wrong token", "use the token the server was started with", 401)
    resp = redirect("/", code=303)
    resp.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure, path="/"
    )
    return resp
