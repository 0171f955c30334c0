"""How the commands end on a user error: one line, `<command>: <what is wrong>`, and exit status 2.

A user error is the project's own message about its input: a ValueError, a missing or unusable path, or a
`UserInputError`, raised by the project's code. The same types raised inside a library are failures there and keep
their traceback, as does every error with `WVLP_TRACEBACK=1`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

USER_ERROR_STATUS = 2
_INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class UserInputError(Exception):
    """Base of the project's errors that are about what the user gave (a lock held by another run, a release)."""


def is_user_error(err: BaseException) -> bool:
    """Whether `err` is an input-error type raised by the project's own code."""
    if not isinstance(err, (*_INPUT_ERRORS, UserInputError)):
        return False
    frame = err.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return False
    module = frame.tb_frame.f_globals.get("__name__", "")
    return module.startswith("wvlp.")


def run_command(name: str, func: Callable[..., Any], *args: Any) -> Any:
    """Runs `func(*args)`; a user error exits with `<name>: <message>` and status 2 instead of a traceback."""
    try:
        return func(*args)
    except Exception as err:
        if os.environ.get("WVLP_TRACEBACK") or not is_user_error(err):
            raise
        print(f"{name}: {err}", file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None


__all__ = ["USER_ERROR_STATUS", "UserInputError", "is_user_error", "run_command"]
