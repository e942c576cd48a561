"""The analysis toolkit on constructed cases, each checked against an independent computation."""

import pytest
import torch

from mesa_lm import MesaConfig, MesaForCausalRegression
from mesa_lm.analysis.attention_maps import attention_maps, weight_on_offsets
from mesa_lm.analysis.construction import (
    compressed_products,
    interpolate_products,
    model_products,
    products_forward,
    proposition1_model,
)
from mesa_lm.analysis.linearise import linearise
from mesa_lm.analysis.probes import preconditioned_inputs, probe_errors, shifted_tokens
from mesa_lm.analysis.weights import block_identity_scales, block_view, head_products
from mesa_lm.data.dynamics import constructed_tokens, sample_dynamics
from mesa_lm.data.tasks.dynamics import DynamicsTask


def gd1_from_zero(states: torch.Tensor, eta: float) -> torch.Tensor:
    """One GD step from Phi_0 = 0 on sum_{j<t} 1/2 ||s_{j+1} - Phi s_j||^2, evaluated at s_t, by a plain loop."""
    B, T, d = states.shape
    out = torch.zeros(B, T, d, dtype=torch.float64)
    for t in range(T):
        phi = torch.zeros(B, d, d, dtype=torch.float64)
        for j in range(t):
            phi += eta * states[:, j + 1, :, None] * states[:, j, None, :]
        out[:, t] = (phi @ states[:, t, :, None])[..., 0]
    return out


def test_proposition1_construction_performs_gd1_to_rounding():
    states = sample_dynamics("fully_observed", 3, 12, torch.Generator().manual_seed(0))[:, :-1].double()
    model = proposition1_model(state_dim=10, eta=0.3)
    with torch.no_grad():
        predictions = model(inputs=constructed_tokens(states)).predictions
    expected = gd1_from_zero(states, 0.3)
    assert (predictions - expected).abs().max() <= 1e-12 * expected.abs().max()
    # the products view computes the same function
    via_products = products_forward(model_products(model), constructed_tokens(states), output_dim=10)
    assert (via_products - expected).abs().max() <= 1e-12 * expected.abs().max()


def test_weight_products_and_block_structure_of_the_construction():
    products = head_products(proposition1_model(state_dim=4, eta=0.5), 0)
    kq, vo = block_view(products.key_query[0], 4), block_view(products.value_output[0], 4)
    assert torch.equal(kq[3, 1], torch.eye(4, dtype=torch.float64))  # key block s_{i-1} meets query block s_t
    assert torch.equal(vo[0, 1], 0.5 * torch.eye(4, dtype=torch.float64))  # value s_i written into the output block
    assert kq.abs().sum() == 4 and vo.abs().sum() == 2 and products.key_query[1].abs().sum() == 0
    scales = block_identity_scales(products.value_output, 4)
    assert scales[0, 0, 1] == 0.5 and scales[0].abs().sum() == 0.5


def test_compressed_alg_of_an_exact_construction_returns_it():
    products = model_products(proposition1_model(state_dim=5, eta=0.2))
    compressed = compressed_products(products, block=5)
    for a, b in zip(products, compressed):
        assert torch.equal(a.key_query, b.key_query) and torch.equal(a.value_output, b.value_output)
    noisy = [type(p)(p.key_query + 0.01 * torch.randn_like(p.key_query), p.value_output) for p in products]
    denoised = compressed_products(noisy, block=5)
    assert (denoised[0].key_query - products[0].key_query).abs().max() < 0.02


def test_interpolation_endpoints():
    a = model_products(proposition1_model(state_dim=3, eta=0.2))
    b = model_products(proposition1_model(state_dim=3, eta=0.6))
    mid = interpolate_products(a, b, 0.5, balance=False)[0]
    torch.testing.assert_close(mid.value_output, model_products(proposition1_model(state_dim=3, eta=0.4))[0].value_output)
    for alpha in (0.0, 1.0):  # balancing changes the split, not the function
        ends = interpolate_products(a, b, alpha)
        inputs = constructed_tokens(torch.randn(2, 7, 3, dtype=torch.float64))
        torch.testing.assert_close(products_forward(ends, inputs, 3), products_forward(b if alpha else a, inputs, 3))


def test_balanced_interpolation_between_two_splits_of_one_function_is_constant():
    torch.manual_seed(0)
    config = MesaConfig.from_preset("linear-1", initializer_range=0.1)
    products = model_products(MesaForCausalRegression(config).double().eval())
    scales = torch.rand(products[0].key_query.shape[0], dtype=torch.float64) * 5 + 0.2
    resplit = [type(p)(p.key_query * scales[:, None, None], p.value_output / scales[:, None, None]) for p in products]
    inputs = constructed_tokens(torch.randn(3, 8, 10, dtype=torch.float64))
    expected = products_forward(products, inputs, 10)
    torch.testing.assert_close(products_forward(resplit, inputs, 10), expected)
    for alpha in (0.25, 0.5, 0.75):
        torch.testing.assert_close(products_forward(interpolate_products(products, resplit, alpha), inputs, 10),
                                   expected, rtol=1e-10, atol=1e-12)
    unbalanced = products_forward(interpolate_products(products, resplit, 0.5, balance=False), inputs, 10)
    assert (unbalanced - expected).abs().max() > 1e-3  # the plain average of two splits is a different function


def test_products_forward_equals_a_trained_style_random_linear_model():
    config = MesaConfig.from_preset("linear-2", initializer_range=0.1, activation_clip=4.0)
    model = MesaForCausalRegression(config).double().eval()
    inputs = constructed_tokens(torch.randn(2, 9, 10, dtype=torch.float64))
    with torch.no_grad():
        expected = model(inputs=inputs).predictions
    got = products_forward(model_products(model), inputs, output_dim=10, clip=4.0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_non_plain_model_is_rejected():
    with pytest.raises(ValueError, match="not a plain linear-attention model"):
        model_products(MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa")))


def test_probe_recovers_a_planted_linear_map():
    generator = torch.Generator().manual_seed(3)
    planted = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    acts = torch.randn(2, 400, 4, 6, generator=generator, dtype=torch.float64)  # (L, B, T, F)
    targets = acts[1] @ planted  # decodable from layer 1 only
    errors = probe_errors(acts[:, :300], targets[:300], acts[:, 300:], targets[300:])
    assert errors[1].max() < 1e-10
    assert errors[0].min() > 0.5


def test_probe_targets():
    states = torch.randn(2, 5, 3, dtype=torch.float64)
    lagged = shifted_tokens(states, 1)
    assert torch.isnan(lagged[:, 0]).all() and torch.equal(lagged[:, 1:], states[:, :-1])
    x = preconditioned_inputs(states, lam=2.0)
    t = 3
    gram = sum(states[0, i, :, None] * states[0, i, None, :] for i in range(t + 1)) + torch.eye(3) / 2.0
    torch.testing.assert_close(gram @ x[0, t], states[0, t])


def test_attention_maps_and_offsets():
    model = MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa")).eval()
    maps = attention_maps(model, 0, inputs=torch.randn(4, 10, 10))
    assert maps.shape == (4, 10, 10)
    torch.testing.assert_close(maps.sum(-1), torch.ones(4, 10))
    fake = torch.zeros(1, 6, 6)
    fake[0, torch.arange(1, 6), torch.arange(0, 5)] = 1.0  # every query attends to its previous token
    offsets = weight_on_offsets(fake, max_offset=2)
    assert offsets[0].tolist() == [0.0, 1.0, 0.0]
    # the mesa layer's map: causal, signed, and the mean over the batch of the per-sequence maps. In float64, so the
    # batched and single-sequence passes agree to ~1e-15; the maps come back as float32, and a float32 mean of 3
    # roundings is within a few eps32 of the float64 mean: 8 eps32 of the largest weight.
    double = model.double()
    inputs = torch.randn(3, 6, 10, dtype=torch.float64)
    mesa_maps = attention_maps(double, 1, inputs=inputs)
    assert mesa_maps.shape == (4, 6, 6)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    assert torch.all(mesa_maps[:, ~causal] == 0) and torch.all(mesa_maps[:, causal] != 0)
    per_sequence = torch.stack([attention_maps(double, 1, inputs=inputs[i : i + 1]) for i in range(3)]).double()
    tol = 8 * torch.finfo(torch.float32).eps * per_sequence.abs().max().item()
    torch.testing.assert_close(mesa_maps.double(), per_sequence.mean(0), rtol=0, atol=tol)


def test_linearise_replaces_a_softmax_layer_and_reports_the_loss_change():
    torch.manual_seed(0)
    config = MesaConfig.from_preset("softmax-7", num_hidden_layers=2, mixer_types=["softmax", "softmax"])
    model = MesaForCausalRegression(config).eval()
    task = DynamicsTask(seq_len=12)

    def batches():
        step = 0
        while True:
            yield task.global_batch(step, 16)
            step += 1

    eval_batches = [task.global_batch(i, 16, stream=1) for i in range(2)]
    result = linearise(model, 1, batches(), eval_batches, steps=30, lr=3e-3)
    assert result["model"].config.mixer_types == ["softmax", "linear"]
    assert result["loss_change"] == pytest.approx(result["loss_after"] - result["loss_before"])
    assert abs(result["loss_change"]) < 0.5
    with pytest.raises(ValueError, match="only softmax layers are linearised"):
        linearise(result["model"], 1, batches(), eval_batches, steps=1)
