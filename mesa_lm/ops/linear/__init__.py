"""Linear-attention ops: chunkwise-parallel default, a single-token decoding step and a step-by-step reference."""

from .chunk import linear_attention
from .naive import linear_attention_naive
from .recurrent import linear_attention_step

__all__ = ["linear_attention", "linear_attention_naive", "linear_attention_step"]
