"""Options of `train_lm.py`: one dataclass, filled from a run preset, a YAML/JSON file, then the command line."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
from dataclasses import dataclass, field, fields, make_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..cli_options import OneLineParser
from .presets import RUN_PRESETS

NONFINITE_CHOICES = ("stop", "skip")


@dataclass
class _RunArguments:
    """Every option of a training run but the task's own, with its default (TrainArguments adds the task options)."""

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
    # data (each task's own options are added below, from mesa_lm.data.tasks)
    task: str = field(default="text", metadata={"help": "what to train on: one of the tasks of mesa_lm.data.tasks "
                      "(text, dynamics, fewshot_regression, scalar_regression, ...); its options follow"})
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
    peak_tflops: float | None = field(default=None, metadata={"help": "peak dense TFLOP/s of one device, for the model FLOPs utilisation (mfu) logged with tokens/s; default: looked up by CUDA device name (H100, H200, A100, ...), none on CPU or an unknown GPU"})
    # checkpoints
    save_steps: int = field(default=200, metadata={"help": "save a checkpoint every N steps (and at the end); 0 only at the end"})
    save_total_limit: int = field(default=2, metadata={"help": "keep the last K checkpoints"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' (in output_dir/checkpoints) or a checkpoint folder"})

    nonfinite: str = field(default="stop", metadata={"help": "on a non-finite loss or gradient: 'stop' with an error (the last good checkpoint is kept) or 'skip' the step's update"})

    def __post_init__(self) -> None:
        if self.preset == "none":
            self.preset = None
        if self.output_dir is None:
            self.output_dir = str(Path("outputs") / (self.preset or "run"))
        for f in fields(self):
            _check_type(f, getattr(self, f.name))
        for name, ok, allowed in _range_checks(self):
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: must be {allowed}")
        self._resolve_task_options()
        if self.config_overrides is not None:
            if self.model_name_or_path and self.model_overrides:
                raise ValueError("config_overrides cannot be combined with model_name_or_path (the saved model's "
                                 "config is used as it is); drop one of them")
            _check_overrides(self.model_overrides)

    def _resolve_task_options(self) -> None:
        """Fill the chosen task's options not given with its defaults (checking them); the other tasks' options
        do not apply to this run and are recorded as None (as before tasks had their own modules, a run may carry
        them, e.g. a preset's text options on a dynamics run)."""
        from ..data.tasks.base import Task

        task = self.make_task()
        for name, declared in task_option_fields().items():
            value = getattr(self, name)
            if value is not None and name not in task.option_names():
                # Still a bad value is an error; checked on its own (not against the declaring task's other defaults).
                Task.check_option(declared[0][1], value)
            setattr(self, name, getattr(task, name, None))

    def make_task(self):
        """The task of this run (`mesa_lm.data.tasks`), built from its options as given."""
        from ..data.tasks import make_task, task_class

        cls = task_class(self.task)
        given = {name: getattr(self, name) for name in cls.option_names() if getattr(self, name) is not None}
        if "seed" in cls.__dataclass_fields__:
            given["seed"] = self.seed
        return make_task(self.task, **given)

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
        if isinstance(self.config_overrides, dict):
            return dict(self.config_overrides)
        try:
            parsed = json.loads(self.config_overrides)
        except json.JSONDecodeError as error:
            raise ValueError(f"config_overrides is not valid JSON ({error.msg}): {self.config_overrides!r}")
        if not isinstance(parsed, dict):
            raise ValueError(f"config_overrides must be a JSON object, got {self.config_overrides!r}")
        return parsed

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output_dir) / "checkpoints"


@lru_cache(maxsize=1)
def task_option_fields() -> dict[str, list]:
    """Every task option by name, with the (task, field) pairs that declare it."""
    from ..data.tasks import registered_tasks

    options: dict[str, list] = {}
    for task in registered_tasks().values():
        for f in task.option_fields():
            options.setdefault(f.name, []).append((task.name, f))
    return options


def _task_option_help(declared: list) -> str:
    """`task A, task B: help; task C: its help (default: 10)`, the defaults per task where they differ."""
    by_help: dict[str, list[str]] = {}
    for task, f in declared:
        by_help.setdefault(f.metadata["help"], []).append(task)
    text = "; ".join(f"{', '.join(tasks)}: {help}" for help, tasks in by_help.items())
    defaults = {task: f.default for task, f in declared}
    if len(set(map(repr, defaults.values()))) > 1:
        return f"{text} (default: " + ", ".join(f"{v} for {t}" for t, v in defaults.items()) + ")"
    default = next(iter(defaults.values()))
    return text if default is None and "(default:" in text else f"{text} (default: {default})"


def _task_fields() -> list[tuple]:
    """The task options as TrainArguments fields: None = not given (the task's default applies)."""
    from ..data.tasks.base import value_kind

    out = []
    for name, declared in task_option_fields().items():
        kinds = {value_kind(f.type) for _, f in declared}
        if len(kinds) != 1:
            raise TypeError(f"task option {name!r} has different types in {', '.join(t for t, _ in declared)}")
        out.append((name, f"{kinds.pop().__name__} | None", field(default=None, metadata={
            "help": _task_option_help(declared), "help_has_default": True})))
    return out


TrainArguments = make_dataclass("TrainArguments", _task_fields(), bases=(_RunArguments,))
TrainArguments.__doc__ = "Every option of a training run, with its default; the task options come from the tasks."
TrainArguments.__module__ = __name__


def _kind(dataclass_field) -> tuple[type, bool]:
    """The option's value type (bool, int, float, str; dict allowed for config_overrides) and whether None is allowed."""
    annotation = str(dataclass_field.type)
    kind = next((k for k in (bool, int, float) if annotation.startswith(k.__name__)), str)
    return kind, "None" in annotation


def _check_type(dataclass_field, value) -> None:
    """Booleans only as booleans, integers only as integers (not 1.5, not true), numbers as numbers."""
    kind, optional = _kind(dataclass_field)
    if value is None and optional:
        return
    if kind is bool:
        ok = isinstance(value, bool)
        allowed = "true or false (a boolean, not a string)"
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        allowed = "an integer"
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        allowed = "a number"
    else:
        ok = isinstance(value, str) or (dataclass_field.name == "config_overrides" and isinstance(value, dict))
        allowed = "a string"
    if not ok:
        raise ValueError(f"{dataclass_field.name}={value!r} is invalid: must be {allowed}")


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _range_checks(a: "TrainArguments") -> list[tuple[str, bool, str]]:
    """(option, ok, what is allowed) for every option with a restricted value."""
    from ..data.tasks import registered_tasks

    def positive(name):
        return name, getattr(a, name) >= 1, "an integer >= 1"

    def nonnegative(name):
        return name, getattr(a, name) >= 0, "an integer >= 0"

    def choice(name, allowed):
        return name, getattr(a, name) in allowed, "one of " + ", ".join(map(repr, allowed))

    return [
        (
            "preset",
            a.preset is None or a.preset in RUN_PRESETS,
            "one of " + ", ".join(map(repr, (*RUN_PRESETS, "none"))),
        ),
        choice("task", tuple(registered_tasks())),
        choice("lr_scheduler_type", ("cosine", "constant")),
        choice("mixed_precision", ("no", "bf16", "fp16")),
        choice("report_to", ("tensorboard", "none")),
        choice("nonfinite", NONFINITE_CHOICES),
        ("output_dir", a.output_dir != "", "a folder path"),
        ("seed", 0 <= a.seed < 2**32, "an integer from 0 to 2**32 - 1"),
        *map(positive, ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                        "max_steps", "save_total_limit", "logging_steps", "eval_batches", "max_eval_blocks")),
        *map(nonnegative, ("warmup_steps", "eval_steps", "save_steps")),
        ("learning_rate", _finite(a.learning_rate) and a.learning_rate > 0, "a finite number > 0"),
        ("min_learning_rate", _finite(a.min_learning_rate) and a.min_learning_rate >= 0, "a finite number >= 0"),
        ("weight_decay", _finite(a.weight_decay) and a.weight_decay >= 0, "a finite number >= 0"),
        ("adam_beta1", _finite(a.adam_beta1) and 0 <= a.adam_beta1 < 1, "a number in [0, 1)"),
        ("adam_beta2", _finite(a.adam_beta2) and 0 <= a.adam_beta2 < 1, "a number in [0, 1)"),
        ("adam_epsilon", _finite(a.adam_epsilon) and a.adam_epsilon > 0, "a finite number > 0"),
        ("max_grad_norm", _finite(a.max_grad_norm) and a.max_grad_norm >= 0,
         "a finite number >= 0 (0 disables clipping)"),
        ("peak_tflops", a.peak_tflops is None or (_finite(a.peak_tflops) and a.peak_tflops > 0),
         "a finite number > 0 (TFLOP/s of one device)"),
    ]


def _check_overrides(overrides: dict) -> None:
    unknown = sorted(set(overrides) - _mesa_config_fields())
    if unknown:
        raise ValueError(f"config_overrides has unknown MesaConfig field(s) {', '.join(unknown)}; "
                         "see MesaConfig's arguments")
    for name, value in overrides.items():  # json.loads accepts NaN and Infinity
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"config_overrides {name}={value!r} is invalid: must be a finite number")


@lru_cache(maxsize=1)
def _mesa_config_fields() -> frozenset[str]:
    from ..models.mesa import MesaConfig

    return frozenset(p for p in inspect.signature(MesaConfig.__init__).parameters if p not in ("self", "kwargs"))


def _help(dataclass_field) -> str:
    default = dataclass_field.default
    text = dataclass_field.metadata["help"]
    if not dataclass_field.metadata.get("help_has_default"):
        text += f" (default: {default})"
    return text.replace("%", "%%").replace("%%%%", "%%")


def build_parser(prog: str = "train_lm.py") -> OneLineParser:
    """Options default to *absent*: only what the command line says overrides the preset and the config file."""
    parser = OneLineParser(
        prog=prog,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
        description="Train a mesa-lm model (softmax / linear / mesa layers) with Accelerate on synthetic sequences "
        "or text. Options come from the dataclass defaults shown here, then --preset, then --config FILE (YAML or "
        "JSON), then the command line. Bad input is refused before anything is written (exit status 2).",
    )
    parser.add_argument("--config", help="YAML or JSON file of options (keys are the option names)")
    for f in fields(TrainArguments):
        kind, _ = _kind(f)
        if kind is bool:
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, help=_help(f))
        else:
            parser.add_argument(f"--{f.name}", type=kind, metavar=f.name.upper(), help=_help(f))
    return parser


def load_config_file(path: str) -> dict[str, Any]:
    """The options of a YAML/JSON file; syntax errors, a non-mapping and unknown keys are one-line errors."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"config file {path!r} does not exist or is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"config file {path!r} cannot be read as UTF-8 text ({type(error).__name__})")
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # yaml.YAMLError, json.JSONDecodeError: the message's first line names the place
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"config file {path!r} cannot be parsed: {first}")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of option names to values")
    known = {f.name: f for f in fields(TrainArguments)}
    unknown = sorted(set(map(str, values)) - set(known))
    if unknown:
        raise ValueError(f"config file {path!r} has unknown options: {', '.join(unknown)}")
    for name, value in values.items():  # also the values the command line overrides: a typo is never silent
        if not (name == "preset" and value is None):
            _check_type(known[name], value)
    if values.get("config_overrides") is not None:
        overrides = TrainArguments.model_overrides.fget(argparse.Namespace(config_overrides=values["config_overrides"]))
        _check_overrides(overrides)
    return values


def parse_args(argv: list[str] | None = None) -> TrainArguments:
    """Dataclass defaults < run preset < config file < command line, for every option. Raises ValueError (one
    line) on a bad value; argparse exits with status 2 on a malformed command line."""
    argv = sys.argv[1:] if argv is None else argv
    given = vars(build_parser().parse_args(argv))
    file_values = load_config_file(given.pop("config")) if given.get("config") else {}
    given.pop("config", None)
    preset = given.get("preset", file_values.get("preset", TrainArguments.preset))
    if preset is not None and not isinstance(preset, str):
        raise ValueError(f"preset={preset!r} is invalid: must be a preset name or 'none'")
    if preset not in (None, "none") and preset not in RUN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available presets: {', '.join(RUN_PRESETS)}, none")
    preset_values = RUN_PRESETS.get(preset, {}) if preset not in (None, "none") else {}
    return TrainArguments(**{**preset_values, **file_values, **given, "preset": preset})
