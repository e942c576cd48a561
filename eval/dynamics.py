#!/usr/bin/env python
"""`python eval/dynamics.py --help`: see mesa_lm.evaluation.cli.dynamics_main (also the console script mesa-eval-dynamics)."""

import sys

from mesa_lm.evaluation.cli import dynamics_main

if __name__ == "__main__":
    sys.exit(dynamics_main())
