"""Linear-attention ops: chunked default and a step-by-step reference."""

from .chunk import linear_attention
from .naive import linear_attention_naive

__all__ = ["linear_attention", "linear_attention_naive"]
