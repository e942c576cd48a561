"""The `dynamics` harness: next-step error per position on dynamical systems, next to the baselines
(`mesa_lm/evaluation/dynamics.py`). The system, its noise, hidden size, length and token layout come from the model's
saved task when it was trained on dynamics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...cli_options import at_least, nonnegative_float, nonnegative_int, positive_int
from ...data.dynamics import DYNAMICS
from ...data.tasks.dynamics import DynamicsTask, TOKEN_FORMATS
from ..tables import curve_table, picks
from . import register_harness
from .base import Harness, harness_option

_DEFAULTS = DynamicsTask()  # the training defaults, for a model trained on another task


@register_harness
class DynamicsHarness(Harness):
    name = "dynamics"
    needs = "regression"
    description = ("Next-step error per position on dynamics, next to zero, LSQ, GD-1, Prop-2(k), mesa and softmax "
                   "kernel regression baselines (tuned on training sequences, scored on the test ones).")

    @dataclass
    class Options:
        """next-step prediction on dynamics"""

        dynamics: str | None = harness_option(None, "system (default: from the saved task, else fully_observed)",
                                              choices=DYNAMICS)
        tokens: str | None = harness_option(None, "the model's inputs: 'plain' states or [P1]'s 'constructed' tokens "
                                            "(default: from the saved task)", choices=TOKEN_FORMATS)
        seq_len: int | None = harness_option(None, "positions T per test sequence (default: from the saved task, "
                                             "else 50)", type=at_least(2))
        num_sequences: int = harness_option(1024, "test sequences (default: 1024)", type=at_least(2))
        num_train: int = harness_option(256, "training sequences on which the baselines are tuned (default: 256)",
                                        type=at_least(2))
        noise_std: float | None = harness_option(None, "process noise std (default: from the saved task, else 0.01)",
                                                 type=nonnegative_float)
        hidden_dim: int | None = harness_option(None, "hidden dimension of partially observed systems (default: "
                                                "from the saved task, else 15)", type=positive_int)
        prop2_steps: tuple = harness_option((1, 2, 3), "k of the Prop-2(k) baselines (default: 1 2 3)",
                                            type=positive_int, nargs="*")
        prop2_iterations: int = harness_option(300, "Adam iterations fitting Prop-2's step sizes (default: 300)",
                                               type=positive_int)
        batch_size: int = harness_option(256, "sequences per forward pass (default: 256)", type=positive_int)
        num_resamples: int = harness_option(1000, "bootstrap resamples (default: 1000)", type=at_least(2))
        seed: int = harness_option(0, "seed of test and training sequences (default: 0)", type=nonnegative_int)

    def from_task(self, task, checkpoint: str) -> dict:
        if isinstance(task, DynamicsTask):
            return {k: getattr(task, k) for k in ("dynamics", "tokens", "seq_len", "noise_std", "hidden_dim")}
        from ..loading import read_config, token_layout

        # another task (or none saved): the training defaults; the token layout only a legacy folder lacks
        implied = {k: getattr(_DEFAULTS, k) for k in ("dynamics", "seq_len", "noise_std", "hidden_dim")}
        implied["tokens"] = token_layout(read_config(checkpoint)) if task is None else "plain"
        return implied

    def run(self, checkpoint: str, options, progress: bool = True) -> dict:
        from ..dynamics import run_dynamics

        return run_dynamics(checkpoint, **vars(self.resolve(checkpoint, options)))

    def summary(self, result: dict) -> list[str]:
        return [f"{name:28s} mean next-step error {value:.4f}" for name, value in result["mean_error"].items()]

    def table(self, results: dict[str, dict]) -> dict:
        x = next(iter(results.values()))["x"]
        picked = picks(x, [1, 2, 5, 10, 20, x[-1]])
        return curve_table(results, "error", picked, [f"t={x[i]}" for i in picked],
                           "next-step error 1/2 ||s_{t+1} - prediction||^2 at position t, mean [90% bootstrap CI]",
                           ("dynamics", "state_dim", "seq_len", "noise_std"))

    def figure(self, results: dict[str, dict], path: Path) -> Path:
        from ..plots import plot_curves

        first = next(iter(results.values()))
        panel = {
            "title": f"next-step error, {first['dynamics'].replace('_', ' ')} dynamics, d={first['state_dim']}",
            "x": first["x"],
            "x_label": "position t (states seen)",
            "models": {name: r["curves"]["model"]["error"] for name, r in results.items()},
            "baselines": {k.split("/", 1)[1]: c["error"] for k, c in first["curves"].items() if k.startswith("baseline/")},
        }
        return plot_curves([panel], path, "1/2 ||error||^2 (log scale)", log=True)
