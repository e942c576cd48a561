"""Linear-attention ops: chunkwise-parallel default, a single-token decoding step, a step-by-step reference and
the causal weight map (for analysis)."""

from .chunk import linear_attention
from .naive import linear_attention_naive
from .recurrent import linear_attention_step
from .weights import linear_attention_weights

__all__ = ["linear_attention", "linear_attention_naive", "linear_attention_step", "linear_attention_weights"]
