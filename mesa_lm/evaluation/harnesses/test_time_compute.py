"""The `test_time_compute` harness: a model with mesa layers evaluated with the exact solves (Woodbury, Cholesky) and
with k conjugate-gradient steps: perplexity or task error, distance to the exact outputs, and time per token
(`mesa_lm/evaluation/test_time_compute.py`). What is scored follows the saved task: text windows for a language
model, answers for a recall task, the task loss for a regression task."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ...cli_options import at_least, positive_int
from . import register_harness
from .base import Harness, harness_option


@register_harness
class TestTimeComputeHarness(Harness):
    name = "test_time_compute"
    needs = "causal_lm"
    description = ("Test-time compute of the mesa layer: the same model with the exact solves and with k CG steps; "
                   "loss or task error, distance to the exact outputs and time per token against k.")
    __test__ = False  # not a pytest class, despite its name

    @dataclass
    class Options:
        """test-time compute (mesa solve)"""

        cg_steps: tuple = harness_option((1, 2, 4, 8, 16), "CG steps to evaluate (default: 1 2 4 8 16)",
                                         type=positive_int, nargs="+")
        text_file: str | None = harness_option(None, "language models: a local text file to score (default: the "
                                               "embedded docstring corpus' validation split)")
        tokenizer: str | None = harness_option(None, "language models: tokenizer folder (default: the checkpoint)")
        window: int | None = harness_option(None, "language models: tokens per window (default: the model's "
                                            "maximum length, at most 256)", type=at_least(2))
        max_tokens: int = harness_option(16384, "language models: score the first N tokens (default: 16384)",
                                         type=at_least(2))
        num_sequences: int = harness_option(256, "synthetic tasks: test sequences (default: 256)", type=at_least(2))
        batch_size: int = harness_option(32, "sequences (windows) per forward pass (default: 32)", type=positive_int)
        timing_repeats: int = harness_option(5, "timed passes per solve; the fastest counts (default: 5)",
                                             type=positive_int)
        num_resamples: int = harness_option(1000, "bootstrap resamples (default: 1000)", type=at_least(2))

    def applies_to(self, kind: str, task, checkpoint: str | None = None) -> bool:
        """Models with a mesa layer (of either kind); without the folder, any model of either kind."""
        if kind not in ("causal_lm", "regression"):
            return False
        if checkpoint is None:
            return True
        from ..loading import read_config
        from ..test_time_compute import has_mesa_layers

        return has_mesa_layers(read_config(checkpoint))

    def run(self, checkpoint: str, options, progress: bool = True) -> dict:
        from ...data.tasks import load_task
        from ...data.tasks.recall import TokenTask
        from ..loading import describe_model, load_causal_lm, load_regression_model, model_kind
        from ..recall import RECALL_STREAM
        from ..test_time_compute import (evaluate_test_time_compute, has_mesa_layers, score_regression,
                                         score_text, score_token_task, solve_settings)

        kind, task = model_kind(checkpoint), load_task(checkpoint)
        if kind == "regression":
            if task is None:
                raise ValueError(f"checkpoint {checkpoint!r} has no task.json: the {self.name} harness needs the "
                                 "task a regression model was trained on (retrain with train_lm.py)")
            model = load_regression_model(checkpoint, self.name)
        else:
            model = load_causal_lm(checkpoint, self.name)
        if not has_mesa_layers(model.config):
            raise ValueError(f"checkpoint {checkpoint!r} has no mesa layer (mixers {list(model.config.mixer_types)}): "
                             f"the {self.name} harness compares the mesa layer's solves")
        n, b = options.num_sequences, options.batch_size
        if kind == "regression" or isinstance(task, TokenTask):
            starts = enumerate(range(0, n, b))
            batches = [task.global_batch(i, min(b, n - start), stream=RECALL_STREAM) for i, start in starts]
            scorer = score_regression if kind == "regression" else score_token_task
            metric = "loss (1/2 squared error)" if kind == "regression" else "error (1 - accuracy)"
            data = {"task": task.to_dict(), "sequences": n}
        else:
            batches, data = _text_batches(model, checkpoint, options)
            scorer, metric = score_text, "NLL (nats/token)"
        gated = getattr(model.config, "mesa_gate", "none") != "none"
        rows = evaluate_test_time_compute(model, batches, scorer, solve_settings(options.cg_steps, gated),
                                          options.timing_repeats, options.num_resamples, progress)
        return {"harness": self.name, "model": describe_model(model, checkpoint), "data": data, "metric": metric,
                "head_dim": model.config.head_dim, "rows": rows}

    def summary(self, result: dict) -> list[str]:
        return [f"{r['solve']:10s} {result['metric']} {r['metric']:.5f} [{r['low']:.5f}, {r['high']:.5f}]  "
                f"distance to exact {r['deviation']:.2e}  {r['ms_per_token']:.4f} ms/token" for r in result["rows"]]

    def table(self, results: dict[str, dict]) -> dict:
        rows = []
        for name, result in results.items():
            exact = result["rows"][0]
            for r in result["rows"]:
                values = {"metric": f"{r['metric']:.4f} [{r['low']:.4f}, {r['high']:.4f}]",
                          "distance to exact": f"{r['deviation']:.1e}",
                          "ms/token": f"{r['ms_per_token']:.4f}",
                          "time vs first": f"{r['ms_per_token'] / exact['ms_per_token']:.2f}x"}
                if result["metric"].startswith("NLL"):
                    values["perplexity"] = f"{math.exp(r['metric']):.3f}"
                rows.append({"name": f"{name} {r['solve']}", "kind": "model", "values": values})
        metrics = sorted({r["metric"] for r in results.values()})
        note = (f"metric: {', '.join(metrics)}, mean [90% bootstrap CI over sequences]; distance to exact = "
                "||outputs - exact outputs|| / ||exact outputs|| (logits or predictions; the first row's solve is "
                "the reference); ms/token: fastest of the timed forward passes over one batch")
        columns = ["metric", "perplexity", "distance to exact", "ms/token", "time vs first"]
        if not any("perplexity" in row["values"] for row in rows):
            columns.remove("perplexity")
        return {"columns": columns, "rows": rows, "note": note}

    def figure(self, results: dict[str, dict], path: Path) -> Path:
        return plot_test_time_compute(results, path)


def _text_batches(model, checkpoint: str, options) -> tuple[list[dict], dict]:
    import torch
    from transformers import AutoTokenizer

    from ..loading import max_positions
    from ..perplexity import load_split, make_windows, tokenize_stream

    tokenizer = AutoTokenizer.from_pretrained(options.tokenizer or checkpoint)
    texts, source = load_split(options.text_file)
    kept, chars = [], 0  # tokenise only about what is scored: a token holds far fewer than 16 characters
    for text in texts:
        kept.append(text)
        chars += len(text)
        if chars >= 16 * options.max_tokens:
            break
    stream = tokenize_stream(kept, tokenizer).ids[: options.max_tokens]
    window = options.window or min(256, max_positions(model.config) or 256)
    ids, weights = make_windows(stream, window, window)
    batches = [{"ids": i, "weights": w} for i, w in zip(torch.split(ids, options.batch_size),
                                                         torch.split(weights, options.batch_size))]
    return batches, {"source": source, "tokens": len(stream), "window": window}


def plot_test_time_compute(results: dict[str, dict], path: Path) -> Path:
    """Three panels against CG steps (log 2 axis): the metric minus the first exact solve's (the same sequences, so
    the difference is paired; the table has the intervals), the distance to the exact outputs, time per token; the
    exact solves as horizontal dashed lines."""
    from ..plots import BASELINE_COLORS, MODEL_COLORS, plt  # plots selects the file-only backend

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    metric = next(iter(results.values()))["metric"]
    panels = (("metric", f"{metric} minus exact", False), ("deviation", "distance to exact outputs (relative)", True),
              ("ms_per_token", "ms per token (forward)", False))
    for i, (name, result) in enumerate(results.items()):
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        cg = [r for r in result["rows"] if r["method"] == "cg"]
        exact = [r for r in result["rows"] if r["method"] != "cg"]
        steps = [r["cg_max_iter"] for r in cg]
        for ax, (key, label, log) in zip(axes, panels):
            shift = result["rows"][0]["metric"] if key == "metric" else 0.0
            values = [max(r[key], 1e-12) if log else r[key] - shift for r in cg]
            ax.plot(steps, values, marker="o", color=color, linewidth=2.2, label=f"{name}: CG")
            for j, r in enumerate(exact):
                if not (log and r[key] <= 0):
                    ax.axhline(r[key] - shift, color=BASELINE_COLORS[j % len(BASELINE_COLORS)], linestyle="--",
                               linewidth=1.3, label=f"{name}: {r['solve']} (exact)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(steps, [str(s) for s in steps])
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("CG steps", fontsize=11)
            ax.set_title(label, fontsize=12)
            ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
