"""What every harness is: its options (a dataclass, each field with default and help), the kind of model it needs,
the options it reads from the model's saved task, and how it runs, prints, tabulates and plots."""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar


def harness_option(default: Any, help: str, *, type: Callable | None = None, choices: tuple | None = None,
                   nargs: str | int | None = None, metavar: Any = None) -> Any:
    """A harness option: a dataclass field with what its command-line flag needs. A default of None with
    `from the saved task` in the help means the harness fills it from the model's `task.json`."""
    return dataclasses.field(default=default, metadata={"help": help, "type": type, "choices": choices,
                                                        "nargs": nargs, "metavar": metavar})


def _flag_type(f: dataclasses.Field) -> Callable | None:
    if f.metadata.get("type") is not None:
        return f.metadata["type"]
    text = str(f.type)
    return next((k for k in (int, float) if text.startswith(k.__name__) or f"[{k.__name__}" in text), None)


def add_options(parser: argparse.ArgumentParser, options_class: type, prefix: str = "", title: str = "") -> None:
    """One `--PREFIXname` flag per field of `options_class`; defaults as the dataclass says."""
    group = parser.add_argument_group(title or options_class.__doc__.splitlines()[0])
    for f in dataclasses.fields(options_class):
        meta = f.metadata
        if str(f.type).startswith("bool"):
            group.add_argument(f"--{prefix}{f.name}", dest=f"{prefix}{f.name}", action="store_true",
                               help=meta["help"])
            continue
        kwargs = {"default": f.default, "help": meta["help"].replace("%", "%%")}
        for key in ("choices", "nargs", "metavar"):
            if meta.get(key) is not None:
                kwargs[key] = meta[key]
        if meta.get("choices") is None and meta.get("metavar") is None:
            kwargs["metavar"] = f.name.upper()
        flag_type = _flag_type(f)
        if flag_type is not None:
            kwargs["type"] = flag_type
        group.add_argument(f"--{prefix}{f.name}", dest=f"{prefix}{f.name}", **kwargs)


def options_from_args(args: argparse.Namespace, options_class: type, prefix: str = ""):
    """The options instance from parsed flags (lists from `nargs` become tuples)."""
    values = {}
    for f in dataclasses.fields(options_class):
        value = getattr(args, prefix + f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return options_class(**values)


class TaskAssumed(UserWarning):
    """A model folder has no saved task: the harness assumed option values (the message names them)."""


class Harness:
    """Base of all harnesses; a subclass is registered with `@register_harness` (see `harnesses/__init__.py`)."""

    name: ClassVar[str]                  # the command (`eval/harness.py NAME`) and compare's `--harnesses` value
    needs: ClassVar[str]                 # the model kind it runs on: "causal_lm" or "regression"
    description: ClassVar[str]           # one line, for --help
    Options: ClassVar[type]              # dataclass of its options
    prefix: ClassVar[str] = ""           # compare's namespace for the options (default: NAME.)
    figure_file: ClassVar[str | None] = None  # compare's figure file (None: NAME.png; `figure` returning None: none)

    @classmethod
    def option_prefix(cls) -> str:
        return (cls.prefix or cls.name) + "."

    def applies_to(self, kind: str, task, checkpoint: str | None = None) -> bool:
        """Whether it runs on a checkpoint of this kind (`causal_lm`/`regression`) trained on `task` (or None);
        `checkpoint` (the folder) for harnesses that need to look at the model's config."""
        return kind == self.needs

    def from_task(self, task, checkpoint: str) -> dict[str, Any]:
        """Values of the options left None, read from the saved task (`task` is None for a folder without
        `task.json`: then what is assumed, which `resolve` reports)."""
        return {}

    def resolve(self, checkpoint: str, options):
        """`options` with every None that the saved task decides filled in; a folder without `task.json` gets the
        harness's assumption and a warning naming the flags to pass instead."""
        from ...data.tasks import load_task
        from ..loading import model_kind

        task = load_task(checkpoint)
        if not self.applies_to(model_kind(checkpoint), task, checkpoint):
            return options  # the run refuses the checkpoint with its own one-line error
        implied = {k: v for k, v in self.from_task(task, checkpoint).items() if getattr(options, k) is None}
        if task is None and implied:
            flags = ", ".join(f"--{k} {' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                              for k, v in implied.items())
            warnings.warn(f"{checkpoint} has no task.json (saved before the task was recorded); {self.name} assumes "
                          f"{flags}: pass these options (in compare: --{self.option_prefix()}NAME) if it was "
                          "trained otherwise", TaskAssumed, stacklevel=2)
        return dataclasses.replace(options, **implied)

    def run(self, checkpoint: str, options, progress: bool = True) -> dict:
        """The JSON-ready result record of this harness on one checkpoint."""
        raise NotImplementedError

    def summary(self, result: dict) -> list[str]:
        """Lines the command prints after a run."""
        return []

    def table(self, results: dict[str, dict]) -> dict:
        """compare's table from `results[variant]`: `{"columns": [...], "rows": [{"name", "kind", "values"}],
        "note": str}` (kind "model" or "baseline")."""
        raise NotImplementedError

    def figure(self, results: dict[str, dict], path: Path) -> Path | None:
        """compare's figure over the variants (None: this harness draws none)."""
        return None
