"""Shared pieces of the dynamics experiments: evaluate a trained model next to the baselines and plot it."""

from __future__ import annotations

from pathlib import Path

from ...evaluation.dynamics import evaluate_dynamics
from ...evaluation.plots import plot_curves
from ..budget import Budget


def evaluate(model, budget: Budget, dynamics: str = "fully_observed", prop2_steps=(), **options) -> dict:
    return evaluate_dynamics(
        model,
        dynamics=dynamics,
        num_sequences=budget.eval_sequences,
        num_train=budget.tune_sequences,
        prop2_steps=tuple(prop2_steps),
        prop2_iterations=budget.steps(150, 300),
        num_resamples=budget.resamples,
        **options,
    )


def plot_models_and_baselines(records: dict[str, dict], baselines: list[str], path: Path, title: str) -> str:
    """Per-position error of several models (solid) on one task with the chosen baselines (dashed)."""
    first = next(iter(records.values()))
    panel = {
        "title": title,
        "x": first["x"],
        "x_label": first["x_label"],
        "models": {label: r["curves"]["model"]["error"] for label, r in records.items()},
        "baselines": {name: first["curves"][f"baseline/{name}"]["error"] for name in baselines},
    }
    return str(plot_curves([panel], path, ylabel="next-step error  1/2 ||s_{t+1} - prediction||^2", log=True))
