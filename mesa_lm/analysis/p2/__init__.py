"""[P2] (Zheng et al. 2024): a one-layer linear Transformer trained by gradient descent on a complex AR process.

process: the data; model: the merged-weight model and full-batch GD; theory: the closed-form limit of ab;
experiment: `run_p2(out_dir, quick)`, every start and initialisation; plots: the figures. See docs/p2.md.
"""

from .experiment import INITS, STARTS, P2Config, run_p2, run_start
from .process import Start, sample_sequences, tokens
from .theory import ab_limit, ab_limit_mc, ratio_limit, test_error_limit

__all__ = [
    "INITS",
    "STARTS",
    "P2Config",
    "Start",
    "ab_limit",
    "ab_limit_mc",
    "ratio_limit",
    "run_p2",
    "run_start",
    "sample_sequences",
    "test_error_limit",
    "tokens",
]
