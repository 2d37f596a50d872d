"""Errors a user can act on. The CLI prints them as one line (plus a hint) and exits 1.

Every module raises one of these for bad input instead of letting a traceback through.
"""

from __future__ import annotations


class StudioError(Exception):
    """A failure the message explains; `hint` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}\n  hint: {self.hint}" if self.hint else msg


class DataError(StudioError):
    """A bad data file: names the file, the 1-based line (or record) and the field."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str, hint: str | None = None):
        self.file, self.line, self.field = str(file), line, field
        where = self.file + (f":{line}" if line is not None else "")
        what = f"{field}: {message}" if field else message
        super().__init__(f"{where}: {what}", hint)
