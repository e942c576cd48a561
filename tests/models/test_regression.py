"""MesaForCausalRegression: read-in/read-out, the loss, cached stepping and [P1]'s constructed-token models."""

import pytest
import torch

from mesa_lm import MesaCache, MesaConfig, MesaForCausalRegression


def test_loss_is_half_squared_error_summed_over_dims_averaged_over_batch_and_positions():
    model = MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa"))
    inputs, targets = torch.randn(4, 9, 10), torch.randn(4, 9, 10)
    out = model(inputs, targets=targets)
    assert out.predictions.shape == (4, 9, 10)
    predictions, targets = out.predictions.detach().double(), targets.double()
    expected = sum(0.5 * ((predictions[b, t] - targets[b, t]) ** 2).sum() for b in range(4) for t in range(9)) / (4 * 9)
    # The loss is reduced in float32 over 360 positive terms: a difference, a square and about log2(360) + 2 roundings
    # of the sum, each of relative size eps; 64 eps is a 4x margin. A wrong formula is off by a factor (1/2, 10, 9).
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss.double(), expected, rtol=64 * torch.finfo(torch.float32).eps, atol=0)


def test_zero_predictor_scores_the_papers_reference_loss():
    # [P1]: on U(-1, 1)^10 targets the zero predictor scores 10 * (1/3) / 2 = 1.667
    model = MesaForCausalRegression(MesaConfig.from_preset("linear-1"))
    torch.nn.init.zeros_(model.model.layers[0].mixer.o_proj.weight)
    inputs = torch.zeros(512, 8, 40)
    targets = torch.rand(512, 8, 10) * 2 - 1
    assert abs(model(inputs, targets=targets).loss.item() - 10 / 6) < 0.02


def test_constructed_tokens_identity_read_in_and_slice_read_out():
    model = MesaForCausalRegression(MesaConfig.from_preset("linear-1"))
    assert model.read_in is None and model.read_out is None
    assert model.model.embed_tokens is None
    inputs = torch.randn(2, 6, 40)
    out = model(inputs, output_hidden_states=True)
    # identity read-in: the residual stream starts as the inputs; slice read-out: the first 10 entries at the end
    torch.testing.assert_close(out.hidden_states[0], inputs)
    torch.testing.assert_close(out.predictions, out.hidden_states[-1][..., :10])
    assert len(out.hidden_states) == 2
    assert out.hidden_states[-1].abs().max() <= 4.0  # [P1]'s activation clipping


@pytest.mark.parametrize("preset", ["hybrid-mesa", "softmax-7", "linear-2", "mesa-1"])
def test_stepping_one_vector_at_a_time_equals_full_forward(preset):
    # An algorithm check (recurrent steps = chunked forward), so float64: in float32 the rounding of the two paths
    # depends on the machine's BLAS (linear-2 differed by 1.9e-5 of max here and 7.4e-5 on an AMD EPYC). In float64
    # the largest difference is 2e-14 of max (linear-2, whose unclipped activations are large: ~100 eps); 1e-12
    # leaves a 50x margin for other BLAS blockings; a real mismatch (a dropped state, a wrong decay, a float32 cast
    # in a cached path) is orders of magnitude larger.
    model = MesaForCausalRegression(MesaConfig.from_preset(preset, chunk_size=4, initializer_range=0.1)).eval()
    model = model.double()
    inputs = torch.randn(3, 11, model.config.input_dim, dtype=torch.float64)
    with torch.no_grad():
        full = model(inputs).predictions
        cache = MesaCache(model.config)
        steps = [model(inputs[:, t : t + 1], past_key_values=cache, use_cache=True).predictions for t in range(11)]
    assert full.dtype == torch.float64
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-12 * full.abs().max().item())


def test_bad_inputs_are_named():
    model = MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa"))
    with pytest.raises(ValueError, match=r"inputs has shape \(2, 5, 7\); expected \(B, T, 10\)"):
        model(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"targets has shape \(2, 5, 3\)"):
        model(torch.randn(2, 5, 10), targets=torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="input_dim and output_dim"):
        MesaForCausalRegression(MesaConfig(vocab_size=None))
