"""Mesa layer ops: chunkwise-parallel default, a single-token decoding step and a step-by-step reference."""

from .chunk import mesa_attention
from .naive import mesa_attention_naive
from .recurrent import mesa_attention_step

__all__ = ["mesa_attention", "mesa_attention_naive", "mesa_attention_step"]
