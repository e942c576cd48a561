"""What every command line of mesa-lm shares: one-line errors (exit status 2) and option types that check ranges.

A bad value is reported as `prog: error: argument --name: VALUE is invalid: must be ...` before any work starts.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (the option list is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0]} (see --help)\n")


def first_line(error: BaseException) -> str:
    """An exception's first message line (its type's name if it has none), for one-line errors."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _number(kind, allowed: str, ok):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be {allowed}")
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be a finite number, {allowed}")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be {allowed}")
        return value

    parse.__name__ = allowed  # argparse names the type in some messages
    return parse


positive_int = _number(int, "an integer >= 1", lambda v: v >= 1)
nonnegative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
finite_float = _number(float, "a finite number", lambda v: True)
positive_float = _number(float, "a number > 0", lambda v: v > 0)
nonnegative_float = _number(float, "a number >= 0", lambda v: v >= 0)


def at_least(minimum: int):
    return _number(int, f"an integer >= {minimum}", lambda v: v >= minimum)


def writable_path(path: str | Path, what: str) -> Path:
    """Check, before any work, that `path` can be written: it is not a folder and no part above it is a file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder; give a file path")
    check_folder_creatable(path.parent, what, str(path))
    return path


def check_folder_creatable(folder: str | Path, what: str, shown: str | None = None) -> None:
    """A folder that exists or could be created: no existing part of it is a file."""
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise ValueError(f"{what} {(shown or str(folder))!r} cannot be created: {str(part)!r} is a file")
            return
