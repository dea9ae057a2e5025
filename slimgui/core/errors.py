"""The one exception type for everything a user can cause."""

from __future__ import annotations


class SlimError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do.

    The CLI prints it on one line and exits with code 2; the GUI shows it and keeps running.
    Anything else that escapes is a bug (exit code 1 with a traceback).
    """

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = " ".join(str(message).split())
        self.hint = " ".join(hint.split()) if hint else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class Cancelled(Exception):
    """Raised inside a long operation when its cancel token was set."""
