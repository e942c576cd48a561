"""MesaForCausalRegression: read-in/read-out, the loss, cached stepping and [P1]'s constructed-token models."""

import pytest
import torch

from mesa_lm import MesaCache, MesaConfig, MesaForCausalRegression


def test_loss_is_half_squared_error_summed_over_dims_averaged_over_batch_and_positions():
    model = MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa"))
    inputs, targets = torch.randn(4, 9, 10), torch.randn(4, 9, 10)
    out = model(inputs, targets=targets)
    assert out.predictions.shape == (4, 9, 10)
    expected = sum(
        0.5 * ((out.predictions[b, t] - targets[b, t]) ** 2).sum() for b in range(4) for t in range(9)
    ) / (4 * 9)
    torch.testing.assert_close(out.loss, expected)


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
    model = MesaForCausalRegression(MesaConfig.from_preset(preset, chunk_size=4, initializer_range=0.1)).eval()
    inputs = torch.randn(3, 11, model.config.input_dim)
    with torch.no_grad():
        full = model(inputs).predictions
        cache = MesaCache(model.config)
        steps = [model(inputs[:, t : t + 1], past_key_values=cache, use_cache=True).predictions for t in range(11)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5 * full.abs().max())


def test_bad_inputs_are_named():
    model = MesaForCausalRegression(MesaConfig.from_preset("hybrid-mesa"))
    with pytest.raises(ValueError, match=r"inputs has shape \(2, 5, 7\); expected \(B, T, 10\)"):
        model(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"targets has shape \(2, 5, 3\)"):
        model(torch.randn(2, 5, 10), targets=torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="input_dim and output_dim"):
        MesaForCausalRegression(MesaConfig(vocab_size=None))
