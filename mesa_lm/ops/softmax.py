"""Softmax attention in (B, T, H, D) layout through torch's scaled_dot_product_attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .chunking import all_finite
from .validation import check_qkv

Tensor = torch.Tensor


def softmax_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attention_mask: Tensor | None = None,
    is_causal: bool = True,
    scale: float | None = None,
) -> Tensor:
    """o = softmax(scale * q k^T + mask) v per head; scale defaults to 1/sqrt(D).

    q: (B, Tq, H, D); k: (B, Tk, H, D); v: (B, Tk, H, Dv) -> o (B, Tq, H, Dv).
    attention_mask: boolean (B, 1 or H, Tq, Tk), True = may attend; when given, is_causal is ignored.
    Without a mask and with is_causal, query i sits at position Tk - Tq + i (causal mask aligned to the
    bottom right), so a KV cache needs no explicit mask. Rows with nothing to attend to come out as 0.
    """
    fn = "softmax_attention"
    B, Tq, H, _, _ = check_qkv(fn, q, k, v, same_length=False)
    Tk = k.shape[1]
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.dtype != torch.bool:
            got = attention_mask.dtype if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise ValueError(f"{fn}: attention_mask has dtype {got}; expected torch.bool (True = may attend)")
        m = tuple(attention_mask.shape)
        if len(m) != 4 or m[0] not in (1, B) or m[1] not in (1, H) or m[2:] != (Tq, Tk):
            want = f"(B, 1 or H, Tq, Tk) = ({B}, 1 or {H}, {Tq}, {Tk})"
            raise ValueError(f"{fn}: attention_mask has shape {m}; expected {want}")
        if attention_mask.device != q.device:
            raise ValueError(f"{fn}: attention_mask is on {attention_mask.device} but q is on {q.device}")
    elif is_causal and Tq != Tk:
        # SDPA's is_causal aligns top-left, which is wrong when the queries are the last Tq of Tk tokens.
        attention_mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
    causal = attention_mask is None and is_causal
    o = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attention_mask, is_causal=causal, scale=scale
    )
    if not all_finite(o, q, k, v):
        # SDPA multiplies masked weights (0) by the values, and may add the mask to a NaN score: one non-finite key or
        # value would reach every query, also those that may not attend to it (a NaN query's row comes out as 0, but
        # its backward sends NaN to every key). Redo it with the non-finite keys and values kept out of every query
        # that may not see them.
        if causal:
            attention_mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril()
        o = _masked_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attention_mask, scale)
    return o.transpose(1, 2)


def _masked_attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, scale: float | None) -> Tensor:
    """Softmax attention in (B, H, T, D) layout in which a key or value reaches only the queries allowed to see it.

    A non-finite key or value makes the outputs of the queries that may attend to it NaN (as attending to it does) and
    leaves every other query as it would be without it; a non-finite query makes its own output NaN. Rows with nothing
    to attend to are 0, as SDPA's. Explicit (Tq, Tk) scores: only used when the input holds non-finite values.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    bad_kv = (~torch.isfinite(k)).any(-1) | (~torch.isfinite(v)).any(-1)  # (B, H, Tk)
    bad_q = (~torch.isfinite(q)).any(-1)  # (B, H, Tq)
    k, v = k.masked_fill(bad_kv[..., None], 0.0), v.masked_fill(bad_kv[..., None], 0.0)
    q = q.masked_fill(bad_q[..., None], 0.0)
    scores = (q @ k.transpose(-1, -2)).mul_(scale)
    if allowed is None:
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device)
    some = allowed.any(-1, keepdim=True)  # rows with nothing to attend to stay unmasked (finite), then become 0
    w = scores.masked_fill(~allowed & some, float("-inf")).softmax(-1).masked_fill(~some, 0.0)
    o = (w @ v).to(v.dtype)
    poison = bad_q | (allowed & bad_kv[..., None, :]).any(-1)
    return o.masked_fill(poison[..., None], float("nan"))
