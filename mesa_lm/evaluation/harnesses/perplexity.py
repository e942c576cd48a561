"""The `perplexity` harness: perplexity, bits per byte and per character, per-position loss and ICL score of any
causal LM on a text split (`mesa_lm/evaluation/perplexity.py`); data-parallel over Accelerate processes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...cli_options import at_least, nonnegative_int, positive_int
from . import register_harness
from .base import Harness, harness_option


@register_harness
class PerplexityHarness(Harness):
    name = "perplexity"
    needs = "causal_lm"
    description = ("Perplexity, bits per byte, per-position loss and ICL score of a causal LM (any "
                   "AutoModelForCausalLM) on a text split. Data-parallel: `torchrun --nproc_per_node N "
                   "eval/perplexity.py ...`.")
    figure_file = "perplexity_per_position.png"

    @dataclass
    class Options:
        """perplexity"""

        tokenizer: str | None = harness_option(None, "tokenizer name or folder (default: the checkpoint folder)")
        text_file: str | None = harness_option(None, "a local text file to score (default: the validation file or "
                                               "dataset of the saved text task, else the embedded docstring corpus)")
        dataset_name: str | None = harness_option(None, "a `datasets` name to score instead (needs it cached offline)")
        dataset_config_name: str | None = harness_option(None, "the dataset's configuration name")
        split: str = harness_option("validation", "split of the dataset or embedded corpus (default: validation)")
        window: int | None = harness_option(None, "tokens per window (default: the model's maximum length, capped by "
                                            "the tokenizer's)", type=at_least(2))
        stride: int | None = harness_option(None, "start a window every STRIDE tokens (default: = window, "
                                            "block-wise); smaller strides give every scored token at least "
                                            "window - stride tokens of context", type=positive_int)
        batch_size: int = harness_option(8, "windows per forward pass per process (default: 8)", type=positive_int)
        icl_positions: tuple | None = harness_option(None, "positions of the ICL score loss(LATE) - loss(EARLY) "
                                                      "(default: 50 500, or window/10 and window-1 for shorter "
                                                      "windows)", type=nonnegative_int, nargs=2,
                                                      metavar=("EARLY", "LATE"))
        max_tokens: int | None = harness_option(None, "score only the first N tokens of the split", type=at_least(2))

    def applies_to(self, kind: str, task, checkpoint: str | None = None) -> bool:
        """Language models (a model trained on a synthetic token task, e.g. recall, has no text tokenizer)."""
        return kind == "causal_lm" and (task is None or task.name == "text")

    def resolve(self, checkpoint: str, options):
        """Without a text source given, the validation text the model was trained with (its saved task's
        `validation_file`, or its `datasets` dataset); else the embedded corpus. (A model trained on `--train_file`
        alone validated on the file's last 5%: pass that text as `--text_file`.)"""
        from dataclasses import replace

        from ...data.tasks import load_task
        from ...data.tasks.text import TextTask

        if options.text_file or options.dataset_name:
            return options
        task = load_task(checkpoint)
        if isinstance(task, TextTask) and task.validation_file:
            return replace(options, text_file=task.validation_file)
        if isinstance(task, TextTask) and task.dataset_name:
            return replace(options, dataset_name=task.dataset_name, dataset_config_name=task.dataset_config_name)
        return options

    def run(self, checkpoint: str, options, progress: bool = True) -> dict:
        import torch
        from accelerate import Accelerator

        from ..perplexity import run_perplexity

        accelerator = Accelerator(cpu=not torch.cuda.is_available())  # CPU mode: processes sync over gloo
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if accelerator.num_processes != launched:
            raise ValueError(f"WORLD_SIZE={launched} but Accelerate runs {accelerator.num_processes} process(es)")
        values = vars(self.resolve(checkpoint, options)).copy()
        values["tokenizer_path"] = values.pop("tokenizer")
        return run_perplexity(checkpoint, **values, accelerator=accelerator, progress=progress)

    def summary(self, result: dict) -> list[str]:
        return [f"perplexity {result['perplexity']:.3f}  mean NLL {result['mean_nll']:.4f}  "
                f"bits/byte {result['bits_per_byte']:.4f}  bits/char {result['bits_per_character']:.4f}  "
                f"ICL score {result['icl_score']}  ({result['tokens_scored']} tokens, {result['bytes_scored']} bytes, "
                f"{result['num_processes']} process(es))"]

    def table(self, results: dict[str, dict]) -> dict:
        rows = []
        for name, r in results.items():
            early, late = r["icl_positions"]
            icl = ("n/a" if r["icl_score"] is None else
                   f"{r['icl_score']:.3f} [{r['icl_score_interval'][0]:.3f}, {r['icl_score_interval'][1]:.3f}]")
            rows.append({"name": name, "kind": "model", "values": {
                "bits/byte": f"{r['bits_per_byte']:.4f}",
                "bits/char": f"{r['bits_per_character']:.4f}",
                "perplexity": f"{r['perplexity']:.2f}",
                "mean NLL": f"{r['mean_nll']:.4f}",
                "ICL score": icl,
                "ICL positions": f"{late} - {early}",
                "tokens scored": str(r["tokens_scored"]),
                "bytes scored": str(r["bytes_scored"]),
                "window/stride": f"{r['window']}/{r['stride']}",
            }})
        columns = ["bits/byte", "bits/char", "perplexity", "mean NLL", "ICL score", "ICL positions", "tokens scored",
                   "bytes scored", "window/stride"]
        note = ("bits/byte (and /char) = NLL of the scored text tokens / UTF-8 bytes (characters) of the text they "
                "cover / ln 2: comparable across tokenizers; perplexity and mean NLL are per token (EOS included) and "
                "are not. ICL score = mean loss at the late position minus at the early one (negative: context "
                "helps), [90% bootstrap CI over windows]")
        return {"columns": columns, "rows": rows, "note": note}

    def figure(self, results: dict[str, dict], path: Path) -> Path:
        from ..plots import plot_curves, smooth

        first = next(iter(results.values()))
        width = max(1, first["window"] // 32)
        length = len(first["loss_per_position"])
        models = {}
        for name, r in results.items():
            low, high = r["loss_per_position_interval"]
            models[name] = {"mean": smooth(r["loss_per_position"], width), "low": smooth(low, width),
                            "high": smooth(high, width)}
        start = max(next(i for i, v in enumerate(m["mean"]) if v is not None) for m in models.values())
        for m in models.values():
            for key in ("mean", "low", "high"):
                m[key] = m[key][start:length]
        panel = {
            "title": f"loss per position (moving average over {width})",
            "x": list(range(start, length)),
            "x_label": "token position in window (tokens of context)",
            "models": models,
        }
        return plot_curves([panel], path, "next-token NLL (nats)")
