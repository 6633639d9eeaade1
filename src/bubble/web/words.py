"""Split a command line into words the way `shlex.split` does, in linear time.

`shlex` builds each token with `self.token = self.token + char`; CPython cannot append in
place to an attribute, so one long word costs O(n^2): a 256 KiB word took 3.4 s of CPU and
a 1 MB `args` 11 s (measured here, Python 3.11). This splitter gives the same words and the
same errors (`tests/web/test_web_words.py` checks it against `shlex` with hypothesis) with
one regular-expression pass: 256 KiB in a few milliseconds.

POSIX rules, as `shlex.split(s)`: words are separated by space, tab, CR or LF; `'...'` is
literal; in `"..."` a backslash escapes only `"` and `\\`; outside quotes a backslash escapes
any character; quoted parts and plain parts next to each other form one word; `''` is an
empty word. No comments, no expansion: nothing is ever run by a shell.
"""

from __future__ import annotations

import re

WHITESPACE = " \t\r\n"

# One alternative per lexical piece; every one consumes at least one character and none
# backtracks into another, so the scan is linear. The last two catch what cannot close.
_PIECE = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | '(?P<single>[^']*)'
  | "(?P<double>(?:[^"\\]|\\.)*)"
  | \\(?P<escaped>.)
  | (?P<plain>[^ \t\r\n'"\\]+)
  | (?P<open>['"])
  | (?P<trailing>\\)
    """,
    re.VERBOSE | re.DOTALL,
)
_DOUBLE_ESCAPE = re.compile(r'\\(["\\])')
# An unclosed "..." whose last character escapes nothing: shlex names the backslash.
_OPEN_DOUBLE_DANGLING = re.compile(r'(?:[^"\\]|\\.)*\\', re.DOTALL)


def split(text: str) -> list[str]:
    """The words of `text`; ValueError as `shlex.split` raises it for an open quote or a
    trailing backslash."""
    words: list[str] = []
    parts: list[str] = []
    in_word = False
    for m in _PIECE.finditer(text):
        kind = m.lastgroup
        if kind == "space":
            if in_word:
                words.append("".join(parts))
                parts.clear()
                in_word = False
            continue
        if kind == "open":
            if m.group(kind) == '"' and _OPEN_DOUBLE_DANGLING.fullmatch(text, m.end()):
                raise ValueError("No escaped character")
            raise ValueError("No closing quotation")
        if kind == "trailing":
            raise ValueError("No escaped character")
        value = m.group(kind or "plain")
        if kind == "double":
            value = _DOUBLE_ESCAPE.sub(r"\1", value)
        parts.append(value)
        in_word = True
    if in_word:
        words.append("".join(parts))
    return words
