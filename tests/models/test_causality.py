"""Model-level causality: non-finite values in masked padding (right or left) never reach real tokens, and a NaN
embedding at position t leaves the logits before t untouched, for every layer mix and both softmax kernels. In float64,
so "untouched" is checked to rounding on any CPU."""

from __future__ import annotations

import pytest
import torch

from .mixes import MIXES, VOCAB, make_model

T, REAL = 11, 7
NAN = float("nan")
TOL = dict(rtol=1e-10, atol=1e-10)  # float64: a real leak changes the logits by far more than rounding


def float64_model(mix: str, attn: str, **overrides):
    model = make_model(mix, **overrides).double()
    model.set_attn_implementation(attn)
    return model


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("chunk", [4, 16])  # splits the sequence / holds it in one chunk
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mix", list(MIXES))
def test_nan_in_padding_never_reaches_real_tokens(mix: str, side: str, chunk: int, attn: str):
    model = float64_model(mix, attn, chunk_size=chunk)
    ids = torch.randint(1, VOCAB, (2, T), generator=torch.Generator().manual_seed(3))
    emb = model.get_input_embeddings()(ids).detach()
    mask = torch.ones(2, T, dtype=torch.long)
    real = slice(0, REAL) if side == "right" else slice(T - REAL, T)
    pad = slice(REAL, T) if side == "right" else slice(0, T - REAL)
    mask[0, pad] = 0
    poisoned = emb.clone()
    poisoned[0, pad] = NAN
    with torch.no_grad():
        out = model(inputs_embeds=poisoned, attention_mask=mask).logits
        alone = model(inputs_embeds=emb[:1, real]).logits
        full = model(inputs_embeds=emb[1:]).logits
    assert torch.isfinite(out[0, real]).all()
    torch.testing.assert_close(out[0, real], alone[0], **TOL)
    torch.testing.assert_close(out[1], full[0], **TOL)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("mix", list(MIXES))
def test_nan_at_t_leaves_earlier_logits_untouched(mix: str, attn: str):
    model = float64_model(mix, attn, chunk_size=4)
    ids = torch.randint(1, VOCAB, (2, T), generator=torch.Generator().manual_seed(4))
    emb = model.get_input_embeddings()(ids).detach()
    t = 6  # inside the second chunk of 4
    poisoned = emb.clone()
    poisoned[0, t, 3] = NAN
    with torch.no_grad():
        out = model(inputs_embeds=poisoned).logits
        clean = model(inputs_embeds=emb).logits
    assert torch.isfinite(out[0, :t]).all()
    torch.testing.assert_close(out[0, :t], clean[0, :t], **TOL)
    torch.testing.assert_close(out[1], clean[1], **TOL)  # the rerun may round differently
