"""Reading request input safely: the JSON body and whole numbers from the query string.

Every check here runs before the input costs anything: the size before a byte is parsed,
and everything that would otherwise surface as a 500 (lone surrogates, deep nesting,
`NaN`/`Infinity`, numbers beyond 63 bits) is a 400 in the one error shape (issue 13).
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from bubble.web.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_ARGV_BYTES = 64 << 10  # a run's argv (and interpreter), the kernel's limit is larger
# A run request is a few hundred bytes; the largest valid one (MAX_ARGV_BYTES of argv,
# JSON-escaped) stays far below this. Everything else is refused unread.
MAX_JSON_BODY = 512 << 10
MAX_JSON_DEPTH = 8  # the deepest valid body is 4 ({"policy": {"fs": {"write": [...]}}})
# Query numbers (seq, run number, byte offsets) are SQLite/off_t integers: 63 bits.
MAX_QUERY_INT = (1 << 63) - 1


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 4xx saying what is wrong with it.

    The size is checked before a byte is parsed (Content-Length, then a bounded read for a
    chunked body), the text must be UTF-8 without lone surrogates (`"\\ud800"` would fail
    later when encoded), and nesting is bounded: nothing here can raise a 500.
    """
    if not request.is_json:
        raise UnsupportedMediaType(
            "the body must be JSON", "send it with 'Content-Type: application/json'"
        )
    if (request.content_length or 0) > MAX_JSON_BODY:
        raise _too_large()
    raw = request.stream.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise _too_large()
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise _too_deep() from None
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8", "send JSON encoded as UTF-8") from None
    except ValueError as err:
        raise BadRequest(f"the body is not valid JSON: {err}", "check the JSON syntax") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", 'e.g. {"cmd": "/bin/echo hi"}')
    _check_values(body)
    return body


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a JSON body may have at most {MAX_JSON_BODY >> 10} KiB",
        f"a command line has at most {MAX_ARGV_BYTES >> 10} KiB; upload large inputs as files",
    )


def _too_deep() -> BadRequest:
    return BadRequest(
        "the body is nested too deeply", "a run request is a flat object; see docs/web.md"
    )


def _no_constant(name: str) -> Any:
    raise BadRequest(
        f"{name} is not a JSON number",
        'numbers must be finite, e.g. "timeout": 30',
    )


def _check_values(body: dict[str, Any]) -> None:
    """Refuse deep nesting and strings that are not Unicode text (lone surrogates)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            stack.extend((k, depth) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(
                    "the body contains a lone UTF-16 surrogate (e.g. \\ud800)",
                    "send valid Unicode text",
                ) from None


def int_arg(text: str | None, name: str, default: int = 0) -> int:
    """A non-negative whole number from the query string, refused (400) if it is not one
    or does not fit the 63 bits the store and file offsets have."""
    if text is None or text == "":
        return default
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):  # isdigit alone takes fullwidth digits
        raise BadRequest(f"{name} must be a whole number", f"e.g. {name}=0")
    if digits is not text:
        raise BadRequest(f"{name} must not be negative", f"e.g. {name}=0")
    # Compared as text first: int() of 5000 digits is refused by Python itself.
    if len(digits.lstrip("0")) > 19 or int(digits) > MAX_QUERY_INT:
        raise BadRequest(f"{name} is too large", f"at most {MAX_QUERY_INT}")
    return int(digits)
