#!/usr/bin/env python
"""Train a mesa-lm model with Accelerate: `python train_lm.py --help`, `accelerate launch train_lm.py ...`,
or `torchrun --nproc_per_node N train_lm.py ...`."""

import sys

from mesa_lm.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
