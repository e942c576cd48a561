#!/usr/bin/env python
"""`python eval/perplexity.py --help`: see mesa_lm.evaluation.cli.perplexity_main (also the console script mesa-eval-perplexity)."""

import sys

from mesa_lm.evaluation.cli import perplexity_main

if __name__ == "__main__":
    sys.exit(perplexity_main())
