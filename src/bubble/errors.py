"""One error hierarchy for Bubble. Every error carries a hint that says how to fix it.

The exit status of `bubble run` for its own errors follows DESIGN §3: 125 for Bubble's own
problems (bad flags, kernel lacks a feature), 126 for a program that cannot be executed,
127 for a program that cannot be found.
"""


class BubbleError(Exception):
    """Base class: `message` says what is wrong, `hint` how to fix it."""

    exit_code = 125

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(BubbleError):
    """A bad flag, a bad value or a missing argument."""


class ProgramNotFound(BubbleError):
    """The program to run does not exist."""

    exit_code = 127


class NotExecutable(BubbleError):
    """The program exists but cannot be executed."""

    exit_code = 126


class KernelError(BubbleError):
    """The kernel refused something the sandbox needs, or lacks a feature."""
