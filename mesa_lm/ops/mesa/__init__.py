"""Mesa layer ops: chunkwise-parallel default, a single-token decoding step, a step-by-step reference and the
causal weight map (for analysis)."""

from .chunk import mesa_attention
from .naive import mesa_attention_naive
from .recurrent import mesa_attention_step
from .weights import mesa_attention_weights, mesa_queries

__all__ = [
    "mesa_attention",
    "mesa_attention_naive",
    "mesa_attention_step",
    "mesa_attention_weights",
    "mesa_queries",
]
