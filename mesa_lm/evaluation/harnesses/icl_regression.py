"""The `icl_regression` harness: few-shot in-context regression error against the number of examples, in several
prompt formats, next to the baselines (`mesa_lm/evaluation/icl_regression.py`). Vector or scalar, the input
distribution, the number of pairs and the token layout come from the model's saved task."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ...cli_options import at_least, nonnegative_float, nonnegative_int, positive_float, positive_int
from ...data.tasks.dynamics import DynamicsTask, TOKEN_FORMATS
from ...data.tasks.fewshot_regression import FewShotRegressionTask
from ...data.tasks.scalar_regression import ScalarRegressionTask
from ..icl_regression import FORMATS, TASKS
from ..tables import curve_table, picks
from . import register_harness
from .base import Harness, harness_option


@register_harness
class ICLRegressionHarness(Harness):
    name = "icl_regression"
    needs = "regression"
    prefix = "icl"
    description = ("Few-shot in-context regression of a MesaForCausalRegression checkpoint against least squares, "
                   "ridge, GD-1, averaging, k-NN and LSQ on the pairs the model sees, with bootstrap 90% intervals.")

    @dataclass
    class Options:
        """few-shot in-context regression"""

        task: str | None = harness_option(None, "'vector': y = W x, W orthogonal; 'scalar': y = w . x, w ~ N(0, I) "
                                          "(default: from the saved task, else vector)", choices=TASKS)
        formats: tuple = harness_option(("plain", "eos", "learned_eos"), "prompt formats: plain pairs; eos: a zero "
                                        "vector after every pair; learned_eos: a prompt-tuned EOS; soft_prefix: a "
                                        "prompt-tuned prefix plus EOS (default: plain eos learned_eos)",
                                        choices=FORMATS, nargs="+")
        tokens: str | None = harness_option(None, "the model's inputs: 'plain' or [P1]'s 'constructed' tokens "
                                            "(default: from the saved task)", choices=TOKEN_FORMATS)
        pairs: int | None = harness_option(None, "(x, y) pairs per prompt (default: from the saved task, else 25)",
                                           type=positive_int)
        num_prompts: int = harness_option(1280, "test prompts, shared by model and baselines (default: 1280)",
                                          type=at_least(2))
        num_tune_prompts: int = harness_option(512, "separate prompts on which the baselines' ridge lambda and GD-1 "
                                               "steps are tuned (default: 512)", type=at_least(2))
        distribution: str | None = harness_option(None, "inputs x ~ U(-1, 1) or N(0, I) (default: from the saved "
                                                  "task, else uniform)", choices=("uniform", "normal"))
        noise_std: float = harness_option(0.0, "label noise std (default: 0)", type=nonnegative_float)
        batch_size: int = harness_option(256, "prompts per forward pass (default: 256)", type=positive_int)
        tune_steps: int = harness_option(200, "Adam steps of prompt tuning for learned_eos / soft_prefix ([P1]: "
                                         "5000; default: 200 for CPU)", type=nonnegative_int)
        tune_batch: int = harness_option(64, "prompts per tuning step ([P1]: 256; default: 64)", type=positive_int)
        tune_lr: float = harness_option(1e-3, "Adam learning rate of prompt tuning (default: 1e-3)",
                                        type=positive_float)
        prefix_len: int = harness_option(20, "tokens of the soft prefix (default: 20)", type=positive_int)
        knn: int = harness_option(3, "k of the nearest-neighbours baseline (default: 3)", type=positive_int)
        num_resamples: int = harness_option(1000, "bootstrap resamples for the 90% intervals (default: 1000)",
                                            type=at_least(2))
        seed: int = harness_option(0, "seed of prompts, tuning and bootstrap (default: 0)", type=nonnegative_int)

    def from_task(self, task, checkpoint: str) -> dict:
        if isinstance(task, FewShotRegressionTask):
            return {"task": "scalar" if isinstance(task, ScalarRegressionTask) else "vector", "tokens": "plain",
                    "pairs": task.num_pairs, "distribution": task.input_distribution}
        implied = {"task": "vector", "pairs": 25, "distribution": "uniform"}
        if isinstance(task, DynamicsTask):
            implied["tokens"] = task.tokens
        else:  # a legacy folder: the layout from the config's shapes
            from ..loading import read_config, token_layout

            implied["tokens"] = token_layout(read_config(checkpoint))
        return implied

    def run(self, checkpoint: str, options, progress: bool = True) -> dict:
        from ..icl_regression import run_icl_regression

        if options.num_prompts < 1000:
            print(f"warning: {options.num_prompts} prompts; bootstrap intervals want >= 1000", file=sys.stderr)
        return run_icl_regression(checkpoint, **vars(self.resolve(checkpoint, options)), progress=progress)

    def summary(self, result: dict) -> list[str]:
        lines = []
        for fmt in result["formats"]:
            curve = result["curves"][f"model/{fmt}"]["normalised"]["mean"]
            lines.append(f"{fmt}: normalised error at k=1: {curve[min(1, len(curve) - 1)]:.3f}, last: {curve[-1]:.3f}")
        return lines

    def table(self, results: dict[str, dict]) -> dict:
        first = next(iter(results.values()))
        x, d = first["x"], first["dim"]
        picked = picks(x, [1, 2, d // 2, d, 2 * d, x[-1]])
        return curve_table(results, "normalised", picked, [f"k={x[i]}" for i in picked],
                           "error normalised by the zero predictor (zero = 1) at k in-context examples, mean "
                           "[90% bootstrap CI]", ("task", "dim", "pairs", "noise_std", "distribution"))

    def figure(self, results: dict[str, dict], path: Path) -> Path:
        from ..plots import plot_curves

        first = next(iter(results.values()))
        baselines = {k.split("/", 1)[-1]: c["normalised"] for k, c in first["curves"].items()
                     if k.startswith("baseline/") or k == "zero"}
        panels = [
            {
                "title": f"{first['task']} regression, d={first['dim']}, format: {fmt}",
                "x": first["x"],
                "x_label": "in-context examples",
                "models": {n: r["curves"][f"model/{fmt}"]["normalised"] for n, r in results.items()
                           if f"model/{fmt}" in r["curves"]},
                "baselines": baselines,
            }
            for fmt in first["formats"]
        ]
        return plot_curves(panels, path, "error / zero-predictor error", ylim=(0, 1.6))
