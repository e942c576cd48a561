"""Causality under non-finite inputs: a NaN (or inf) at position t never reaches the outputs before t, and non-finite
values in masked padding never reach real positions, for softmax, linear and mesa attention (every solve method),
with chunk sizes that split the sequence and that do not."""

from __future__ import annotations

import pytest
import torch

from mesa_lm.layers.padding import mask_padding, no_decay_at_padding
from mesa_lm.ops import linear_attention, mesa_attention, softmax_attention

B, T, H, D = 2, 13, 2, 4
NAN = float("nan")


def inputs(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    x = {n: torch.randn(B, T, H, D, generator=gen) for n in ("q", "k", "v")}
    x["k"] = x["k"] / D**0.5
    x["gamma"] = 0.5 + 0.5 * torch.rand(B, T, H, generator=gen)
    x["beta"] = 0.5 + 0.5 * torch.rand(B, T, H, generator=gen)
    return x


# mixer -> (call, the inputs it reads)
MIXERS = {
    "softmax": (lambda x, c: softmax_attention(x["q"], x["k"], x["v"]), "qkv"),
    "linear": (lambda x, c: linear_attention(x["q"], x["k"], x["v"], chunk_size=c), "qkv"),
    "linear-gated": (lambda x, c: linear_attention(x["q"], x["k"], x["v"], x["gamma"], chunk_size=c), "qkvg"),
    "mesa": (lambda x, c: mesa_attention(x["q"], x["k"], x["v"], torch.ones(H), chunk_size=c), "qkv"),
    "mesa-gated": (
        lambda x, c: mesa_attention(x["q"], x["k"], x["v"], torch.ones(H, D), x["gamma"], x["beta"], chunk_size=c),
        "qkvgb",
    ),
    "mesa-gated-cg": (
        lambda x, c: mesa_attention(
            x["q"], x["k"], x["v"], torch.ones(H, D), x["gamma"], x["beta"], chunk_size=c, method="cg"
        ),
        "qkvgb",
    ),
}
NAMES = {"q": "q", "k": "k", "v": "v", "g": "gamma", "b": "beta"}


def poisoned(x: dict, name: str, t: int, value: float = NAN) -> dict:
    y = {n: a.clone().requires_grad_() for n, a in x.items()}
    with torch.no_grad():
        a = y[name]
        if a.dim() == 4:
            a[0, t, 1, 2] = value
        else:
            a[0, t, 1] = value
    return y


@pytest.mark.parametrize("chunk", [4, 16])  # splits T = 13 into chunks / one chunk holds it all
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_nonfinite_input_stays_causal(mixer: str, chunk: int):
    call, reads = MIXERS[mixer]
    x = inputs()
    clean = call(x, chunk).detach()
    for letter in reads:
        name = NAMES[letter]
        for t in (0, 5, 7, T - 1):
            for value in (NAN, float("inf")):
                y = poisoned(x, name, t, value)
                o = call(y, chunk)
                where = f"{mixer}, chunk {chunk}, {value} in {name} at t={t}"
                assert torch.isfinite(o[:, :t]).all(), where
                torch.testing.assert_close(o[:, :t], clean[:, :t], atol=1e-5, rtol=1e-5, msg=where)
                torch.testing.assert_close(o[1], clean[1], atol=1e-5, rtol=1e-5, msg=where)  # other batch row
                assert not torch.isfinite(o[0, t, 1]).all(), where  # the position itself sees it
                # the gradients the earlier outputs send to the earlier inputs stay finite
                o[:, :t].sum().backward()
                for n, a in y.items():
                    if a.grad is not None:
                        assert torch.isfinite(a.grad[:, :t]).all(), f"{where}: grad of {n}"


def test_nonfinite_initial_state_does_not_crash():
    x = inputs()
    h0 = torch.full((B, H, D, D), NAN)
    o = mesa_attention(x["q"], x["k"], x["v"], torch.ones(H), initial_state=(h0, torch.zeros(B, H, D, D)), chunk_size=4)
    assert o.shape == (B, T, H, D)


@pytest.mark.parametrize("chunk", [4, 16])
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_nan_in_right_padding_never_reaches_real_positions(mixer: str, chunk: int):
    """Row 0 has 8 real tokens, then NaN padding (everything: q, k, v, gates), masked as the layers mask it."""
    call, _ = MIXERS[mixer]
    x = inputs(1)
    n = 8
    token_mask = torch.ones(B, T, dtype=torch.bool)
    token_mask[0, n:] = False
    y = {a: b.clone() for a, b in x.items()}
    for a in y.values():
        a[0, n:] = NAN
    if mixer == "softmax":
        allowed = torch.ones(T, T, dtype=torch.bool).tril() & token_mask[:, None, None, :]
        o = softmax_attention(y["q"], y["k"], y["v"], attention_mask=allowed)
    else:
        y["k"], y["v"] = mask_padding(token_mask, y["k"], y["v"])
        y["gamma"] = no_decay_at_padding(token_mask, y["gamma"])
        y["beta"] = no_decay_at_padding(token_mask, y["beta"])
        o = call(y, chunk)
    alone = call({a: b[:1, :n] for a, b in x.items()}, chunk)
    assert torch.isfinite(o[0, :n]).all()
    torch.testing.assert_close(o[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(o[1], call(x, chunk)[1], atol=1e-5, rtol=1e-5)


def test_mask_padding_selects_rather_than_multiplies():
    mask = torch.tensor([[True, True, False]])
    t = torch.tensor([[1.0, 2.0, NAN]])[..., None]
    (out,) = mask_padding(mask, t)
    assert torch.equal(out, torch.tensor([[1.0, 2.0, 0.0]])[..., None])
