"""Next-step error on linear dynamics per position, for a `MesaForCausalRegression` trained on them, next to the
baselines of science.md section 4 (tuned on training sequences, scored on the same test sequences as the model)."""

from __future__ import annotations

import torch

from ..data.tasks.dynamics import DynamicsTask
from .baselines_dynamics import next_step_error, run_dynamics_baselines
from .bootstrap import bootstrap_curve
from .loading import describe_model, max_positions, token_layout

Tensor = torch.Tensor


def sample_states(task: DynamicsTask, batch: int, seed: int) -> tuple[Tensor, Tensor]:
    """Model inputs (B, T, input_dim) and observed states `s_1 .. s_{T+1}` (B, T + 1, d) from the task's sampler."""
    data = task.sample(batch, torch.Generator().manual_seed(seed))
    inputs, targets = data["inputs"], data["targets"]
    d = targets.shape[-1]
    first = inputs[:, :1, d : 2 * d] if task.tokens == "constructed" else inputs[:, :1]  # e_t = (0, s_t, s_t, s_{t-1})
    return inputs, torch.cat([first, targets], dim=1)


@torch.no_grad()
def model_next_step_errors(model, inputs: Tensor, states: Tensor, batch_size: int) -> Tensor:
    """The model's `1/2 ||s_{t+1} - prediction_t||^2` (B, T)."""
    errors = []
    for start in range(0, len(inputs), batch_size):
        predictions = model(inputs=inputs[start : start + batch_size]).predictions
        errors.append(next_step_error(predictions, states[start : start + batch_size]))
    return torch.cat(errors)


def evaluate_dynamics(
    model,
    dynamics: str = "fully_observed",
    seq_len: int = 50,
    num_sequences: int = 1024,
    num_train: int = 256,
    noise_std: float = 0.01,
    hidden_dim: int = 15,
    prop2_steps: tuple[int, ...] = (1, 2, 3),
    prop2_iterations: int = 300,
    batch_size: int = 256,
    num_resamples: int = 1000,
    seed: int = 0,
    tokens: str | None = None,
) -> dict:
    """Per-position next-step error of the model and of every baseline on `num_sequences` test sequences, with
    bootstrap 90% intervals. JSON-ready record. `tokens` is the model's input layout (`plain` or `constructed`; the
    harness reads it from the saved task; None: inferred from the config's shapes, for models in memory)."""
    config = model.config
    layout = tokens or token_layout(config)
    if layout == "plain" and config.input_dim != config.output_dim:
        raise ValueError(
            f"this model maps {config.input_dim} -> {config.output_dim} dimensions; next-step prediction needs "
            "states in and states out (input_dim == output_dim, or constructed tokens)"
        )
    limit = max_positions(config)
    if limit is not None and seq_len > limit:
        raise ValueError(f"sequence of {seq_len} states exceeds the model's maximum of {limit} positions")
    if num_sequences < 2:
        raise ValueError(f"num_sequences={num_sequences} is invalid: need at least 2")
    task = DynamicsTask(
        dynamics=dynamics,
        tokens=layout,
        state_dim=config.output_dim,
        hidden_dim=hidden_dim,
        seq_len=seq_len,
        noise_std=noise_std,
        seed=seed,
    )
    inputs, test_states = sample_states(task, num_sequences, seed + 1)
    _, train_states = sample_states(task, num_train, seed + 2)
    errors = {"model": model_next_step_errors(model, inputs, test_states, batch_size)}
    baseline_errors, tuned = run_dynamics_baselines(train_states, test_states, prop2_steps, prop2_iterations)
    errors.update({f"baseline/{name}": e for name, e in baseline_errors.items()})
    zero = baseline_errors["zero"]
    curves = {
        name: {
            "error": bootstrap_curve(e, None, num_resamples, seed=seed).as_dict(),
            "normalised": bootstrap_curve(e, zero, num_resamples, seed=seed).as_dict(),
        }
        for name, e in errors.items()
    }
    return {
        "harness": "dynamics",
        "dynamics": dynamics,
        "state_dim": config.output_dim,
        "seq_len": seq_len,
        "num_sequences": num_sequences,
        "noise_std": noise_std,
        "token_layout": layout,
        "x": list(range(1, seq_len + 1)),
        "x_label": "position t (states seen)",
        "curves": curves,
        "mean_error": {name: e.mean().item() for name, e in errors.items()},
        "baseline_hyperparameters": tuned,
    }


def run_dynamics(checkpoint: str, **options) -> dict:
    """Load a `MesaForCausalRegression` checkpoint and run `evaluate_dynamics` with `options`."""
    from .loading import load_regression_model

    model = load_regression_model(checkpoint, "dynamics")
    result = evaluate_dynamics(model, **options)
    return {"model": describe_model(model, checkpoint), **result}
