"""One exception type for every problem a user can fix.

The CLI turns a HeadstartError into a short message and a non-zero exit, never a
traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class HeadstartError(Exception):
    """A problem with the user's input or environment, with a hint on how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
