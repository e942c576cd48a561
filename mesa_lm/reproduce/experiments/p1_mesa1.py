"""Experiment 2 ([P1]): one mesa layer on constructed tokens performs least squares in context."""

from __future__ import annotations

import time
from pathlib import Path

from ..budget import Budget
from ..report import Claim, ExperimentResult, verdict
from ..runs import train_model
from .dynamics_common import evaluate, plot_models_and_baselines


def run(out: Path, budget: Budget) -> ExperimentResult:
    started = time.time()
    # From [P1]'s 2e-4 init, the keys (and with them the data term against the regulariser) must grow by orders of
    # magnitude; Adam moves weights by about lr per step, so at 3e-4 the layer stays over-regularised within these
    # budgets (ratio to LSQ 1.10 after 2,000 steps, 7x LSQ's error late in the sequence); 3e-3 gets 1.05 in 600.
    model, trained = train_model(out, "mesa-1", preset="mesa-1", max_steps=budget.steps(600, 2000),
                                 learning_rate=3e-3, eval_steps=0, save_steps=0, seed=0)
    record = evaluate(model, budget)
    errors = record["mean_error"]
    model_error, lsq_error = errors["model"], errors["baseline/lsq"]
    figure = plot_models_and_baselines({"mesa-1": record}, ["zero", "gd_1", "lsq", "mesa"],
                                       out / "figures" / "p1_mesa1_curves.png", "one mesa layer vs least squares")
    claims = [
        Claim("one trained mesa layer matches least squares (tuned ridge) on the context",
              f"next-step error {model_error:.4f} vs LSQ {lsq_error:.4f} (ratio {model_error / lsq_error:.3f}); "
              f"GD-1 {errors['baseline/gd_1']:.4f}, the exact mesa baseline {errors['baseline/mesa']:.4f}",
              verdict(model_error <= 1.1 * lsq_error, partial=model_error < errors["baseline/gd_1"]),
              {"model": model_error, "lsq": lsq_error, "gd_1": errors["baseline/gd_1"]}),
    ]
    notes = f"Trained {trained['steps']} steps ({trained['steps_per_second']:.1f} steps/s)."
    return ExperimentResult("p1_mesa1", "2. one mesa layer vs least squares", "P1", claims, [figure], notes,
                            time.time() - started)
