"""Command line of `train_lm.py` / `mesa-train`: parse options, train, and report bad input in one line."""

from __future__ import annotations

import sys

from .arguments import parse_args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        from .trainer import train  # heavy imports only once the command line is valid

        train(args)
    except ValueError as error:
        print(f"train_lm.py: error: {error}", file=sys.stderr)
        return 2
    return 0
