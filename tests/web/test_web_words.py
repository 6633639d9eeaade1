"""The command-line splitter: the same words and errors as `shlex.split`, in linear time."""

from __future__ import annotations

import shlex

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bubble.web import words

# Everything that matters to the grammar, plus ordinary and non-ASCII text.
ALPHABET = st.sampled_from(list(" \t\r\n'\"\\abc-=$`#;|&*é\x00"))


def _outcome(split, text: str) -> list[str] | str:
    try:
        return split(text)
    except ValueError as err:
        return f"ValueError: {err}"


@settings(max_examples=3000, deadline=None)
@given(st.text(ALPHABET, max_size=40))
@example('"abc\\')
@example("a'b c'd\\ e")
@example('"\\a\\""')
def test_split_agrees_with_shlex(text: str) -> None:
    assert _outcome(words.split, text) == _outcome(shlex.split, text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=12), max_size=8))
def test_split_inverts_shlex_join(argv: list[str]) -> None:
    assert words.split(shlex.join(argv)) == argv


def test_one_long_word_is_split_in_one_pass() -> None:
    # shlex builds a word by `token = token + char` (quadratic); the splitter must not.
    # Counted, not timed: the regex yields one match for the whole word.
    long_word = "a" * (1 << 20)
    assert sum(1 for _ in words._PIECE.finditer(long_word)) == 1
    assert words.split(f"x {long_word} 'y'") == ["x", long_word, "y"]
