#!/usr/bin/env python
"""`python eval/compare.py --help`: see mesa_lm.evaluation.cli.compare_main (also the console script mesa-eval-compare)."""

import sys

from mesa_lm.evaluation.cli import compare_main

if __name__ == "__main__":
    sys.exit(compare_main())
