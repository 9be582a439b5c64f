"""The one exception type for problems the user can fix: ``UserError``.

Raised at the project's own user-facing error sites (an unreadable video, a corrupt marker file, a
loss that became NaN, a launch without RANK, ...). ``modes/job.py`` prints a ``UserError`` (and the
OS/ValueError family the loaders raise for missing files and bad values) as one line with exit code 1;
every other exception, e.g. torch's RuntimeError for a shape mismatch or out of memory, is a bug and
keeps its traceback. It subclasses RuntimeError so that code catching RuntimeError still catches it,
and so that a DataLoader worker re-raises it in the main process with its own type.
"""
from __future__ import annotations


class UserError(RuntimeError):
    """Something the user asked for cannot be done; the message names the file or flag and what was expected."""


# UserError is raised at the project's own user-facing sites; the loaders and parsers name missing files and bad
# values with the OSError family and ValueError. A DataLoader worker re-raises each with its own type. Other
# OSErrors (a full disk while saving) and every other RuntimeError keep their traceback: they are not about what
# the user asked for.
USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ValueError)


def error_text(err: BaseException) -> str:
    """The message of ``err``; for an error re-raised from a DataLoader worker, only the original
    exception's line (the worker's traceback is noise for a missing or corrupt file)."""
    text = str(err)
    if "DataLoader worker" in text and "Traceback" in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else text
    return text
