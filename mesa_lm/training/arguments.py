"""Options of `train_lm.py`: one dataclass, filled from a run preset, a YAML/JSON file, then the command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .presets import RUN_PRESETS

TASK_CHOICES = ("text", "dynamics", "fewshot_regression", "scalar_regression")


@dataclass
class TrainArguments:
    """Every option of a training run, with its default."""

    # run
    preset: str | None = field(
        default="docstrings-hybrid",
        metadata={"help": f"run preset (model, task, optimiser) or 'none'; one of: {', '.join(RUN_PRESETS)}"},
    )
    output_dir: str | None = field(default=None, metadata={"help": "where the model, checkpoints and metrics go; default outputs/<preset>"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "allow writing into a non-empty output_dir (its old checkpoints are removed)"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation and of the data stream"})
    # model
    model_preset: str | None = field(default=None, metadata={"help": "MesaConfig preset of the model (see MesaConfig.from_preset)"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "start from a saved model folder instead of a fresh one"})
    config_overrides: str | None = field(default=None, metadata={"help": "JSON object of MesaConfig fields, e.g. '{\"hidden_size\": 64}'"})
    # data
    task: str = field(default="text", metadata={"help": f"what to train on: {', '.join(TASK_CHOICES)}"})
    dynamics: str = field(default="fully_observed", metadata={"help": "dynamics task: fully_observed, partially_observed, nonlinear, contracting, fixed_w"})
    tokens: str = field(default="plain", metadata={"help": "dynamics task: 'plain' states or [P1]'s 'constructed' tokens"})
    state_dim: int = field(default=10, metadata={"help": "synthetic tasks: dimension of observed states / regression inputs"})
    hidden_dim: int = field(default=15, metadata={"help": "partially observed dynamics: hidden state dimension"})
    seq_len: int = field(default=50, metadata={"help": "dynamics task: sequence length T"})
    num_pairs: int = field(default=25, metadata={"help": "regression tasks: (x, y) pairs per prompt"})
    noise_std: float = field(default=0.01, metadata={"help": "synthetic tasks: observation noise std"})
    input_distribution: str = field(default="uniform", metadata={"help": "regression tasks: 'uniform' U(-1,1) or 'normal' inputs"})
    train_file: str | None = field(default=None, metadata={"help": "text task: a local training text file (default: the embedded docstring corpus)"})
    validation_file: str | None = field(default=None, metadata={"help": "text task: a local validation text file (default: the last 5%% of train_file)"})
    dataset_name: str | None = field(default=None, metadata={"help": "text task: a `datasets` Hub dataset name (needs the network)"})
    dataset_config_name: str | None = field(default=None, metadata={"help": "text task: the dataset's configuration name"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "text task: an existing tokenizer name or path instead of training a BPE"})
    vocab_size: int = field(default=4096, metadata={"help": "text task: vocabulary size of the byte-level BPE trained on the train split"})
    block_size: int = field(default=128, metadata={"help": "text task: tokens per training block"})
    # optimisation
    per_device_train_batch_size: int = field(default=16, metadata={"help": "sequences per process per micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_steps: int = field(default=600, metadata={"help": "optimizer steps to train"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    min_learning_rate: float = field(default=0.0, metadata={"help": "learning rate at the end of the cosine schedule"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "'cosine' (after warm-up) or 'constant'"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps from 0 to learning_rate"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (never on norms, biases, the mesa regulariser or gates)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm; 0 disables clipping"})
    mixed_precision: str = field(default="no", metadata={"help": "'no', 'bf16' or 'fp16' (accelerate autocast; mesa states stay float32)"})
    # evaluation and logging
    eval_steps: int = field(default=100, metadata={"help": "evaluate every N steps (and at the end); 0 only at the end"})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "sequences per process per evaluation batch"})
    eval_batches: int = field(default=4, metadata={"help": "synthetic tasks: held-out batches (of per_device_eval_batch_size sequences, shared by all processes) per evaluation"})
    max_eval_blocks: int = field(default=256, metadata={"help": "text task: validation blocks per evaluation"})
    logging_steps: int = field(default=10, metadata={"help": "log the training loss every N steps"})
    report_to: str = field(default="tensorboard", metadata={"help": "'tensorboard' or 'none' (metrics.jsonl is always written)"})
    # checkpoints
    save_steps: int = field(default=200, metadata={"help": "save a checkpoint every N steps (and at the end); 0 only at the end"})
    save_total_limit: int = field(default=2, metadata={"help": "keep the last K checkpoints"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' (in output_dir/checkpoints) or a checkpoint folder"})

    def __post_init__(self) -> None:
        if self.preset == "none":
            self.preset = None
        if self.output_dir is None:
            self.output_dir = str(Path("outputs") / (self.preset or "run"))
        checks = {
            "task": (self.task in TASK_CHOICES, f"one of {', '.join(TASK_CHOICES)}"),
            "lr_scheduler_type": (self.lr_scheduler_type in ("cosine", "constant"), "'cosine' or 'constant'"),
            "mixed_precision": (self.mixed_precision in ("no", "bf16", "fp16"), "'no', 'bf16' or 'fp16'"),
            "report_to": (self.report_to in ("tensorboard", "none"), "'tensorboard' or 'none'"),
            "max_steps": (self.max_steps >= 1, "a positive integer"),
            "per_device_train_batch_size": (self.per_device_train_batch_size >= 1, "a positive integer"),
            "per_device_eval_batch_size": (self.per_device_eval_batch_size >= 1, "a positive integer"),
            "gradient_accumulation_steps": (self.gradient_accumulation_steps >= 1, "a positive integer"),
            "block_size": (self.block_size >= 1, "a positive integer"),
            "vocab_size": (self.vocab_size >= 260, "at least 260 (256 bytes and special tokens)"),
            "learning_rate": (self.learning_rate > 0, "> 0"),
            "save_total_limit": (self.save_total_limit >= 1, "a positive integer"),
            "warmup_steps": (self.warmup_steps >= 0, ">= 0"),
            "eval_steps": (self.eval_steps >= 0, ">= 0"),
            "save_steps": (self.save_steps >= 0, ">= 0"),
            "logging_steps": (self.logging_steps >= 1, "a positive integer"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: must be {allowed}")
        if self.config_overrides is not None and not isinstance(self.config_overrides, dict):
            try:
                parsed = json.loads(self.config_overrides)
            except json.JSONDecodeError as error:
                raise ValueError(f"config_overrides is not valid JSON ({error.msg}): {self.config_overrides!r}")
            if not isinstance(parsed, dict):
                raise ValueError(f"config_overrides must be a JSON object, got {self.config_overrides!r}")

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "TrainArguments":
        """The options of run preset `preset` with `overrides` (what `train_lm.py --preset NAME ...` builds)."""
        if preset not in RUN_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; available presets: {', '.join(RUN_PRESETS)}")
        return cls(**{**RUN_PRESETS[preset], "preset": preset, **overrides})

    @property
    def model_overrides(self) -> dict[str, Any]:
        if self.config_overrides is None:
            return {}
        return dict(self.config_overrides) if isinstance(self.config_overrides, dict) else json.loads(self.config_overrides)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output_dir) / "checkpoints"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (the option list is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _option_type(dataclass_field):
    annotation = str(dataclass_field.type)
    if annotation.startswith("bool"):
        return None
    for name, kind in (("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str


def build_parser(prog: str = "train_lm.py") -> OneLineParser:
    parser = OneLineParser(
        prog=prog,
        allow_abbrev=False,
        description="Train a mesa-lm model (softmax / linear / mesa layers) with Accelerate on synthetic sequences "
        "or text. Options come from --preset, then --config FILE (YAML or JSON), then the command line.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="YAML or JSON file of options (keys are the option names)")
    for f in fields(TrainArguments):
        kind = _option_type(f)
        default = f.default if f.default is not MISSING else None
        if kind is None:
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        else:
            parser.add_argument(f"--{f.name}", type=kind, default=default, help=f.metadata["help"])
    return parser


def load_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"config file {path!r} does not exist")
    text = file.read_text(encoding="utf-8")
    if file.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of option names to values")
    known = {f.name for f in fields(TrainArguments)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config file {path!r} has unknown options: {', '.join(unknown)}")
    return values


def parse_args(argv: list[str] | None = None) -> TrainArguments:
    """Preset < config file < command line. Raises ValueError (one line) on a bad value."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    pre.add_argument("--preset")
    first, _ = pre.parse_known_args(argv)
    file_values = load_config_file(first.config) if first.config else {}
    preset = first.preset or file_values.get("preset") or TrainArguments.preset
    if preset not in (None, "none") and preset not in RUN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available presets: {', '.join(RUN_PRESETS)}, none")
    parser.set_defaults(**(RUN_PRESETS.get(preset, {}) if preset else {}), **file_values)
    namespace = parser.parse_args(argv)
    values = {k: v for k, v in vars(namespace).items() if k != "config"}
    values["preset"] = preset
    return TrainArguments(**values)
