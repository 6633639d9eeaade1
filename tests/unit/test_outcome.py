"""Exit accounting (sandbox/outcome.py): every way a run ends, as pure data."""

from __future__ import annotations

import signal

from bubble.sandbox.outcome import account, peak_rss


def exited(code: int) -> int:
    return code << 8


def killed(sig: int) -> int:
    return sig


def test_a_normal_exit_is_passed_through():
    end = account(exited(3), max_rss_kb=100)
    assert (end.result, end.exit_code, end.signal) == (3, 3, None)
    assert end.notes == "exit=3 max_rss_kb=100"


def test_a_signal_gives_128_plus_n_and_no_exit_code():
    end = account(killed(signal.SIGKILL), limit="timeout")
    assert (end.result, end.exit_code, end.signal) == (137, None, 9)
    assert end.notes == "signal=9 limit=timeout max_rss_kb=0"


def test_a_launch_error_wins_over_the_status():
    end = account(exited(127), error=(127, "cannot execute /x: No such file"))
    assert (end.result, end.exit_code, end.signal) == (127, 127, None)
    end = account(killed(signal.SIGKILL), error=(125, "sandbox set-up failed"))
    assert (end.result, end.exit_code, end.signal) == (125, 125, None)


def test_an_error_with_code_zero_is_only_a_message():
    assert account(exited(0), error=(0, "note")).result == 0


def test_dropped_output_is_counted_in_the_notes():
    assert "output_kept=10 output_dropped=5" in account(exited(0), output=(10, 5)).notes
    assert "output" not in account(exited(0), output=(10, 0)).notes


def test_wait4s_peak_is_the_last_resort():
    assert peak_rss(0, 900) == 900
    assert peak_rss(300, 900) == 300
