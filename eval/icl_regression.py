#!/usr/bin/env python
"""`python eval/icl_regression.py --help`: see mesa_lm.evaluation.cli.icl_regression_main (also the console script mesa-eval-icl-regression)."""

import sys

from mesa_lm.evaluation.cli import icl_regression_main

if __name__ == "__main__":
    sys.exit(icl_regression_main())
