"""The causal weight maps of linear attention and the mesa layer: o = A v exactly (float64), A causal, padded keys
weightless, and an initial state adding only its own term."""

from __future__ import annotations

import pytest
import torch

from mesa_lm.layers.feature_maps import apply_feature_map
from mesa_lm.layers.padding import mask_padding, no_decay_at_padding
from mesa_lm.ops import (
    linear_attention,
    linear_attention_naive,
    linear_attention_weights,
    mesa_attention,
    mesa_attention_naive,
    mesa_attention_weights,
)
from mesa_lm.ops.linear.weights import gate_products
from mesa_lm.ops.mesa.weights import mesa_queries

B, T, H, D, DV = 2, 13, 3, 4, 5
# float64 on O(1) inputs: the maps and the chunked ops agree to a few hundred ulps of the largest output.
TOL = 1e-11


def apply(weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bhts,bshd->bthd", weights, v.to(weights.dtype))


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(got, expected, rtol=0, atol=TOL * expected.abs().max().item())


def rand(*shape: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def gates(gen: torch.Generator, lo: float = 0.5) -> torch.Tensor:
    return lo + (1 - lo) * torch.rand(B, T, H, generator=gen, dtype=torch.float64)


def left_padding_mask() -> torch.Tensor:
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :4] = 0  # row 0 has 4 pad tokens on the left, row 1 none
    return mask


def test_gate_products_are_the_gates_between_key_and_query():
    gen = torch.Generator().manual_seed(0)
    gamma = gates(gen)
    dec = gate_products(gamma, T, torch.float64, gamma.device)
    for t in range(T):
        for s in range(T):
            expected = torch.prod(gamma[:, s + 1 : t + 1], dim=1) if s <= t else torch.zeros(B, H, dtype=torch.float64)
            torch.testing.assert_close(dec[:, :, t, s], expected, rtol=1e-14, atol=0)
    ungated = gate_products(None, T, torch.float64, gamma.device)
    assert torch.equal(ungated, torch.ones(T, T, dtype=torch.float64).tril())


def test_a_zero_gate_forgets_everything_before_it_without_nan():
    gamma = torch.full((1, 6, 1), 0.5, dtype=torch.float64)
    gamma[0, 3] = 0.0
    dec = gate_products(gamma, 6, torch.float64, gamma.device)[0, 0]
    assert torch.isfinite(dec).all()
    assert torch.all(dec[3:, :3] == 0) and torch.all(dec[3:, 3:].diagonal() == 1)


@pytest.mark.parametrize("feature_map", ["none", "elu+1", "dpfp"])
@pytest.mark.parametrize("gated", [False, True])
def test_linear_weights_reproduce_the_output(feature_map, gated):
    gen = torch.Generator().manual_seed(1)
    q = apply_feature_map(rand(B, T, H, D, gen=gen), feature_map, 2)
    k = apply_feature_map(rand(B, T, H, D, gen=gen), feature_map, 2)
    v = rand(B, T, H, DV, gen=gen)
    gamma = gates(gen) if gated else None
    weights = linear_attention_weights(q, k, gamma)
    assert weights.shape == (B, H, T, T) and weights.dtype == torch.float64
    assert torch.all(weights.triu(1) == 0)
    close(apply(weights, v), linear_attention(q, k, v, gamma=gamma, chunk_size=4))
    close(apply(weights, v), linear_attention_naive(q, k, v, gamma=gamma))
    if not gated:
        # ungated: plain (q_t . k_s), causally masked
        close(weights, torch.einsum("bthd,bshd->bhts", q, k).tril())


def test_linear_weights_give_padded_keys_no_weight():
    gen = torch.Generator().manual_seed(2)
    q, k, v = rand(B, T, H, D, gen=gen), rand(B, T, H, D, gen=gen), rand(B, T, H, DV, gen=gen)
    mask = left_padding_mask()
    k, v = mask_padding(mask, k, v)
    gamma = no_decay_at_padding(mask, gates(gen))
    weights = linear_attention_weights(q, k, gamma)
    assert torch.all(weights[0, :, :, :4] == 0)
    assert weights[1, :, :, 0].abs().min() > 0  # the unpadded row keeps its first key
    close(apply(weights, v), linear_attention(q, k, v, gamma=gamma, chunk_size=4))


def test_linear_weights_with_an_initial_state_cover_the_current_tokens():
    gen = torch.Generator().manual_seed(3)
    q, k, v = rand(B, T, H, D, gen=gen), rand(B, T, H, D, gen=gen), rand(B, T, H, DV, gen=gen)
    gamma, s0 = gates(gen), rand(B, H, DV, D, gen=gen)
    o = linear_attention(q, k, v, gamma=gamma, initial_state=s0, chunk_size=4)
    from_start = torch.cumprod(gamma, dim=1)  # gamma_1 ... gamma_t
    past = from_start[..., None] * torch.einsum("bhvd,bthd->bthv", s0, q)
    close(apply(linear_attention_weights(q, k, gamma), v) + past, o)


def mesa_inputs(gen: torch.Generator, lam_kind: str, gated: bool) -> dict:
    out = dict(q=rand(B, T, H, D, gen=gen), k=rand(B, T, H, D, gen=gen) / D**0.5, v=rand(B, T, H, DV, gen=gen))
    shape = (H, D) if lam_kind == "diag" else (H,)
    out["lam"] = 0.5 + torch.rand(*shape, generator=gen, dtype=torch.float64)
    out["gamma"] = gates(gen) if gated else None
    out["beta"] = gates(gen, lo=0.3) if gated else None
    return out


@pytest.mark.parametrize("lam_kind", ["scalar", "diag"])
@pytest.mark.parametrize("gated", [False, True])
def test_mesa_weights_reproduce_the_output(lam_kind, gated):
    x = mesa_inputs(torch.Generator().manual_seed(4), lam_kind, gated)
    q, k, v, lam, gamma, beta = x["q"], x["k"], x["v"], x["lam"], x["gamma"], x["beta"]
    weights = mesa_attention_weights(q, k, lam, gamma=gamma, beta=beta)
    assert weights.shape == (B, H, T, T) and weights.dtype == torch.float64
    assert torch.all(weights.triu(1) == 0)
    close(apply(weights, v), mesa_attention(q, k, v, lam, gamma=gamma, beta=beta, chunk_size=4))
    close(apply(weights, v), mesa_attention_naive(q, k, v, lam, gamma=gamma, beta=beta))


def test_mesa_weights_ungated_are_ridge_regression_weights():
    # Ungated, row t is k_s . (K_t^T K_t + Lambda)^{-1} q_t: the weights of ridge regression's prediction at q_t.
    x = mesa_inputs(torch.Generator().manual_seed(5), "diag", gated=False)
    q, k, lam = x["q"], x["k"], x["lam"]
    weights = mesa_attention_weights(q, k, lam)
    t = 7
    keys = k[:, : t + 1].transpose(1, 2)  # (B, H, t + 1, D)
    gram = keys.transpose(-1, -2) @ keys + torch.diag_embed(lam)
    expected = (keys @ torch.linalg.solve(gram, q[:, t, :, :, None])).squeeze(-1)  # (B, H, t + 1)
    close(weights[:, :, t, : t + 1], expected)


def test_mesa_weights_give_padded_keys_no_weight():
    x = mesa_inputs(torch.Generator().manual_seed(6), "diag", gated=True)
    mask = left_padding_mask()
    k, v = mask_padding(mask, x["k"], x["v"])
    gamma = no_decay_at_padding(mask, x["gamma"])
    weights = mesa_attention_weights(x["q"], k, x["lam"], gamma=gamma, beta=x["beta"])
    assert torch.all(weights[0, :, :, :4] == 0)
    assert weights[1, :, :, 0].abs().min() > 0
    close(apply(weights, v), mesa_attention(x["q"], k, v, x["lam"], gamma=gamma, beta=x["beta"], chunk_size=4))


def test_mesa_weights_with_an_initial_state_cover_the_current_tokens():
    gen = torch.Generator().manual_seed(7)
    x = mesa_inputs(gen, "diag", gated=True)
    a = rand(B, H, D, D, gen=gen)
    state = (a @ a.transpose(-1, -2) / D, rand(B, H, DV, D, gen=gen))
    q, k, v, lam, gamma, beta = x["q"], x["k"], x["v"], x["lam"], x["gamma"], x["beta"]
    o = mesa_attention(q, k, v, lam, gamma=gamma, beta=beta, initial_state=state, chunk_size=4)
    weights = mesa_attention_weights(q, k, lam, gamma=gamma, beta=beta, initial_state=state)
    # H0 enters the solved queries x_t; G0 adds gamma_1 ... gamma_t G0 x_t, a term on no current key.
    xq = mesa_queries(q, k, lam, gamma=gamma, beta=beta, initial_state=state)
    past = torch.cumprod(gamma, dim=1)[..., None] * torch.einsum("bhvd,bthd->bthv", state[1], xq)
    close(apply(weights, v) + past, o)


def test_weights_stay_float32_under_bf16_autocast():
    gen = torch.Generator().manual_seed(8)
    x = {n: (t.float() if t is not None else None) for n, t in mesa_inputs(gen, "diag", gated=True).items()}
    plain_linear = linear_attention_weights(x["q"], x["k"], x["gamma"])
    plain_mesa = mesa_attention_weights(x["q"], x["k"], x["lam"], gamma=x["gamma"], beta=x["beta"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        linear = linear_attention_weights(x["q"], x["k"], x["gamma"])
        mesa = mesa_attention_weights(x["q"], x["k"], x["lam"], gamma=x["gamma"], beta=x["beta"])
    assert linear.dtype == mesa.dtype == torch.float32
    assert torch.equal(linear, plain_linear) and torch.equal(mesa, plain_mesa)


def test_weight_functions_name_bad_inputs():
    q = torch.randn(2, 5, 3, 4)
    with pytest.raises(ValueError, match="gamma has shape"):
        linear_attention_weights(q, q, torch.rand(2, 5, 2))
    with pytest.raises(ValueError, match="lam has shape"):
        mesa_attention_weights(q, q, torch.rand(5))
