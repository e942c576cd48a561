"""The `recall` harness: accuracy of a causal LM trained on a recall task (MQAR, noisy recall, selective copying)
against the number of pairs (tokens to copy) and the sequence length, with bootstrap intervals
(`mesa_lm/evaluation/recall.py`). The task and its options come from the model's saved task."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ...cli_options import at_least, positive_int
from ...data.tasks.recall import TokenTask
from . import register_harness
from .base import Harness, harness_option

RECALL_TASKS = ("mqar", "noisy_recall", "selective_copying")


def state_floats(config, seq_len: int) -> int:
    """Numbers a model holds per sequence to continue it after `seq_len` tokens: softmax layers' keys and values
    (growing with the length), linear layers' `S` (feature dim x value dim per head), mesa layers' `H` and `G`."""
    from ...layers.feature_maps import feature_dim

    total = 0
    for mixer in config.mixer_types:
        if mixer == "softmax":
            total += 2 * seq_len * config.num_key_value_heads * config.head_dim
        elif mixer == "linear":
            features = feature_dim(config.linear_feature_map, config.head_dim, config.linear_dpfp_nu)
            total += config.num_attention_heads * features * config.value_head_dim
        else:
            total += config.num_attention_heads * (config.head_dim + config.value_head_dim) * config.head_dim
    return total


@register_harness
class RecallHarness(Harness):
    name = "recall"
    needs = "causal_lm"
    description = ("Recall accuracy (answers predicted exactly) of a causal LM trained on mqar, noisy_recall or "
                   "selective_copying, against the number of pairs and the sequence length, with 90% bootstrap "
                   "intervals over sequences.")

    @dataclass
    class Options:
        """associative recall"""

        task: str | None = harness_option(None, "recall task (default: from the saved task)", choices=RECALL_TASKS)
        sizes: tuple | None = harness_option(None, "numbers of key-value pairs (selective copying: tokens to copy) "
                                             "to test (default: 1/4, 1/2, 1 and 2 times the trained number)",
                                             type=positive_int, nargs="+")
        seq_lens: tuple | None = harness_option(None, "sequence lengths to test (default: the trained one and twice "
                                                "it, within the model's positions)", type=at_least(2), nargs="+")
        num_sequences: int = harness_option(512, "test sequences per setting (default: 512)", type=at_least(2))
        batch_size: int = harness_option(64, "sequences per forward pass (default: 64)", type=positive_int)
        num_resamples: int = harness_option(1000, "bootstrap resamples (default: 1000)", type=at_least(2))

    def applies_to(self, kind: str, task, checkpoint: str | None = None) -> bool:
        """Causal LMs trained on a recall task (`--task` evaluates them on another one)."""
        return kind == "causal_lm" and task is not None and task.name in RECALL_TASKS

    def from_task(self, task, checkpoint: str) -> dict:
        return {"task": task.name}

    def run(self, checkpoint: str, options, progress: bool = True) -> dict:
        from ...data.tasks import load_task, make_task
        from ..loading import describe_model, load_causal_lm, max_positions
        from ..recall import default_seq_lens, default_sizes, evaluate_recall

        options = self.resolve(checkpoint, options)
        model = load_causal_lm(checkpoint, self.name)
        saved = load_task(checkpoint)
        if options.task is None:
            raise ValueError(f"checkpoint {checkpoint!r} was not trained on a recall task (no recall task.json); "
                             f"pass --task ({', '.join(RECALL_TASKS)}) to test it on one")
        if saved is not None and saved.name == options.task:
            task = saved
        else:  # another task than the trained one: that task's defaults, in the model's vocabulary
            task = make_task(options.task, vocab_size=model.config.vocab_size)
        trained_size = getattr(task, task.size_option)
        sizes = options.sizes or default_sizes(trained_size)
        seq_lens = options.seq_lens or default_seq_lens(task.seq_len, max_positions(model.config))
        if not isinstance(task, TokenTask) or task.vocab_size != model.config.vocab_size:
            raise ValueError(f"checkpoint {checkpoint!r} has a vocabulary of {model.config.vocab_size} tokens; the "
                             f"{task.name} task has vocab_size={task.vocab_size}")
        result = evaluate_recall(model, task, list(sizes), list(seq_lens), options.num_sequences,
                                 options.batch_size, options.num_resamples, progress)
        results_file = Path(checkpoint) / "train_results.json"
        seconds = json.loads(results_file.read_text()).get("train_seconds") if results_file.is_file() else None
        return {"harness": self.name, "model": describe_model(model, checkpoint), "task": task.to_dict(),
                "trained": {"size": trained_size, "seq_len": task.seq_len,
                            "train_seconds": seconds},
                "state_floats": state_floats(model.config, task.seq_len), **result}

    def summary(self, result: dict) -> list[str]:
        word = _word(result)
        return [f"{word}={p['size']:<4d} seq_len={p['seq_len']:<5d} accuracy {p['accuracy']:.4f} "
                f"[{p['low']:.4f}, {p['high']:.4f}]  ({p['answers']} answers)" for p in result["points"]]

    def table(self, results: dict[str, dict]) -> dict:
        settings = sorted({(p["seq_len"], p["size"]) for r in results.values() for p in r["points"]})
        word = _word(next(iter(results.values())))
        columns = [f"{word}={size}, T={length}" for length, size in settings]
        rows = []
        for name, r in results.items():
            values = {c: "n/a" for c in columns}
            for p in r["points"]:
                values[f"{word}={p['size']}, T={p['seq_len']}"] = (f"{p['accuracy']:.3f} [{p['low']:.3f}, "
                                                                   f"{p['high']:.3f}]")
            seconds = r["trained"].get("train_seconds")
            values.update({"parameters": str(r["model"]["parameters"]), "state (floats)": str(r["state_floats"]),
                           "train time": "n/a" if seconds is None else f"{seconds / 60:.1f} min",
                           "trained at": f"{word}={r['trained']['size']}, T={r['trained']['seq_len']}"})
            rows.append({"name": name, "kind": "model", "values": values})
        tasks = sorted({r["task"]["task"] for r in results.values()})
        note = (f"{', '.join(tasks)}: accuracy = answers predicted exactly (argmax) / answers, on fresh sequences, mean "
                "[90% bootstrap CI over sequences]; state = numbers held per sequence after the trained length "
                "(softmax: keys and values, growing with length; linear: S; mesa: H and G)")
        return {"columns": columns + ["trained at", "parameters", "state (floats)", "train time"], "rows": rows,
                "note": note}

    def figure(self, results: dict[str, dict], path: Path) -> Path:
        from ..plots import plot_curves

        lengths = sorted({p["seq_len"] for r in results.values() for p in r["points"]})
        sizes = sorted({p["size"] for r in results.values() for p in r["points"]})
        panels = []
        for length in lengths:
            models = {}
            for name, r in results.items():
                at = {p["size"]: p for p in r["points"] if p["seq_len"] == length}
                models[name] = {key: [at[s][key] if s in at else math.nan for s in sizes]
                                for key in ("accuracy", "low", "high")}
                models[name]["mean"] = models[name].pop("accuracy")
            panels.append({"title": f"sequence length {length}", "x": sizes,
                           "x_label": f"number of {_word(next(iter(results.values())))}", "models": models})
        return plot_curves(panels, path, "recall accuracy", ylim=(0.0, 1.02))


def _word(result: dict) -> str:
    return "pairs" if result["size_option"] == "num_pairs" else "tokens"
