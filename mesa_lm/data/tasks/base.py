"""What every task is: a dataclass whose fields are its options (default and help given once, in the field), checked
on construction, and saved with the trained model as `task.json`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar


def option(default: Any, help: str, choices: tuple | None = None,
           check: tuple[Callable[[Any], bool], str] | None = None) -> Any:
    """A task option: a dataclass field with its help, and the allowed values (`choices`, or a predicate and what it
    allows in words)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "check": check})


def at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f"a number >= {low}"


def finite_nonnegative() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: math.isfinite(v) and v >= 0), "a finite number >= 0"


def value_kind(annotation: Any) -> type:
    """bool, int, float or str, from a field's annotation (a string under `from __future__ import annotations`)."""
    if annotation in (bool, int, float, str):
        return annotation
    text = str(annotation)
    return next((k for k in (bool, int, float) if text.startswith(k.__name__)), str)


def optional(annotation: Any) -> bool:
    return "None" in str(annotation)


@dataclass
class Task:
    """Base of all tasks. Subclasses set `name` (what `--task` takes), `model` (`regression` for
    `MesaForCausalRegression`, `causal_lm` for token models) and declare their options as `option(...)` fields."""

    name: ClassVar[str]
    model: ClassVar[str]
    description: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in self.option_fields():
            self.check_option(f, getattr(self, f.name))

    @staticmethod
    def check_option(f: dataclasses.Field, value: Any) -> None:
        """One option on its own: its type, choices and range (a subclass's `__post_init__` checks how options fit
        together)."""
        if value is None and optional(f.type):
            return
        kind = value_kind(f.type)
        ok_type = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok_type = True
        if not ok_type:
            raise ValueError(f"{f.name}={value!r} is invalid: must be {'an integer' if kind is int else 'a ' + kind.__name__}")
        choices, check = f.metadata.get("choices"), f.metadata.get("check")
        if choices is not None and value not in choices:
            raise ValueError(f"{f.name}={value!r} is invalid: must be one of {', '.join(map(repr, choices))}")
        if check is not None and not check[0](value):
            raise ValueError(f"{f.name}={value!r} is invalid: must be {check[1]}")

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        """The options (every field but `seed`, which the run's `--seed` sets)."""
        return [f for f in dataclasses.fields(cls) if f.name != "seed"]

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in cls.option_fields()]

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}

    def to_dict(self) -> dict[str, Any]:
        """What `task.json` holds: the task's name, its options and its seed."""
        record = {"task": self.name, "options": self.options()}
        if hasattr(self, "seed"):
            record["seed"] = self.seed
        return record
