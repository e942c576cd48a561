"""Mesa layer ops: chunked default and a step-by-step reference."""

from .chunk import mesa_attention
from .naive import mesa_attention_naive

__all__ = ["mesa_attention", "mesa_attention_naive"]
