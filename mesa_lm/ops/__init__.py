"""Tensor ops of mesa_lm: mesa layer, linear attention and softmax attention, all in (B, T, H, D) layout."""

from .linear import linear_attention, linear_attention_naive, linear_attention_step, linear_attention_weights
from .mesa import mesa_attention, mesa_attention_naive, mesa_attention_step, mesa_attention_weights
from .softmax import softmax_attention

__all__ = [
    "mesa_attention",
    "mesa_attention_naive",
    "mesa_attention_step",
    "mesa_attention_weights",
    "linear_attention",
    "linear_attention_naive",
    "linear_attention_step",
    "linear_attention_weights",
    "softmax_attention",
]
