#!/usr/bin/env python
"""`python eval/harness.py HARNESS CHECKPOINT --help`: any registered harness (see mesa_lm.evaluation.cli.evaluate_main,
also the console script mesa-eval)."""

import sys

from mesa_lm.evaluation.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
