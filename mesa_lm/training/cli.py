"""Command line of `train_lm.py` / `mesa-train`: parse options, train, and report any failure in one line.

Exit status 2: bad input (nothing was written). Exit status 1: training started but could not go on (a non-finite
loss, a full disk); the last good checkpoint is kept and no broken model is saved.
"""

from __future__ import annotations

import sys

from .arguments import parse_args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        from .trainer import TrainingError, train  # heavy imports only once the command line is valid

        try:
            train(args)
        except TrainingError as error:
            print(f"train_lm.py: error: {error}", file=sys.stderr)
            return 1
    except ValueError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"train_lm.py: error: {message}", file=sys.stderr)
        return 2
    return 0
