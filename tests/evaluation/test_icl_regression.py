"""Few-shot prompts, formats, prompt tuning and the harness record, on a tiny random regression model."""

import torch

from mesa_lm.evaluation.dynamics import evaluate_dynamics
from mesa_lm.evaluation.icl_regression import FewShotModel, PromptSpec, assemble, evaluate_icl_regression, tune_prompt
from mesa_lm.evaluation.loading import load_regression_model


def test_formats_place_eos_and_prefix_and_read_labels_at_the_inputs():
    x, y = torch.ones(2, 3, 4), 2 * torch.ones(2, 3, 4)
    tokens, positions = assemble(x, y, "plain")
    assert tokens.shape == (2, 6, 4) and positions.tolist() == [0, 2, 4]
    tokens, positions = assemble(x, y, "eos")
    assert tokens.shape == (2, 9, 4) and positions.tolist() == [0, 3, 6] and tokens[:, 2::3].abs().sum() == 0
    prefix = torch.full((5, 4), 7.0)
    tokens, positions = assemble(x, y, "soft_prefix", torch.full((4,), 3.0), prefix)
    assert tokens.shape == (2, 14, 4) and positions.tolist() == [5, 8, 11]
    assert (tokens[:, :5] == 7).all() and (tokens[:, 7::3] == 3).all()


def test_prompt_tuning_lowers_the_label_loss_with_the_model_frozen():
    from mesa_lm import MesaConfig, MesaForCausalRegression

    from .conftest import TINY_REGRESSION

    # a softmax-only model keeps the test fast (the prompt-tuning code does not depend on the mixers)
    model = MesaForCausalRegression(MesaConfig.from_preset("softmax-7", **TINY_REGRESSION, mixer_types=["softmax"] * 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fewshot = FewShotModel(model)
    spec = PromptSpec("vector", 4, 6)
    x, y = spec.sample(256, torch.Generator().manual_seed(5))

    def loss(learned):
        tokens, positions = assemble(x, y, "soft_prefix", learned["eos"], learned["prefix"])
        with torch.no_grad():
            return (0.5 * (fewshot.predict(tokens, positions, 4) - y).pow(2).sum(-1)).mean().item()

    start = tune_prompt(fewshot, spec, "soft_prefix", steps=0, prefix_len=3, progress=False)
    tuned = tune_prompt(fewshot, spec, "soft_prefix", steps=30, batch=32, lr=3e-2, prefix_len=3, progress=False)
    assert loss(tuned) < loss(start)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_harness_record_with_baselines_on_the_same_prompts(regression_dir):
    model = load_regression_model(str(regression_dir), "test")
    result = evaluate_icl_regression(model, formats=("plain", "learned_eos"), pairs=8, num_prompts=1000,
                                     num_tune_prompts=64, tune_steps=2, num_resamples=50, progress=False)
    curves = result["curves"]
    assert {"zero", "model/plain", "model/learned_eos", "baseline/least_squares", "baseline/ridge", "baseline/gd_1",
            "baseline/averaging", "baseline/3_nearest_neighbours", "baseline/seen_pairs_least_squares"} <= set(curves)
    assert curves["zero"]["normalised"]["mean"] == [1.0] * 8
    lsq = curves["baseline/least_squares"]["normalised"]["mean"]
    assert max(lsq[4:]) < 1e-6  # d = 4 noise-free examples suffice
    for curve in curves.values():
        assert all(lo <= m <= hi for m, lo, hi in zip(*(curve["error"][k] for k in ("mean", "low", "high"))))
    assert 0 < result["overall"]["plain"]["normalised_error"]
    # the metric's overall error is the mean of the per-position curve
    mean_curve = sum(curves["model/plain"]["error"]["mean"]) / 8
    assert abs(result["overall"]["plain"]["error"] - mean_curve) < 1e-6 * max(1.0, mean_curve)


def test_constructed_token_models_and_dynamics_harness():
    from mesa_lm import MesaConfig, MesaForCausalRegression

    config = MesaConfig.from_preset("linear-1", input_dim=16, output_dim=4, hidden_size=16, head_dim=8)
    model = MesaForCausalRegression(config).eval()
    fewshot = FewShotModel(model)
    assert fewshot.layout == "constructed" and fewshot.dim == 4
    result = evaluate_dynamics(model, seq_len=12, num_sequences=64, num_train=32, prop2_steps=(1,),
                               prop2_iterations=5, num_resamples=50)
    assert result["token_layout"] == "constructed"
    # a near-zero-initialised linear-1 model predicts about zero
    assert abs(result["mean_error"]["model"] - result["mean_error"]["baseline/zero"]) < 1e-3
    assert len(result["curves"]["model"]["error"]["mean"]) == 12
