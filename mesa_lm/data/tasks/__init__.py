"""The tasks a model trains on, one module per task, registered by name and saved with the trained model.

A task is a dataclass subclass of `Task` (`base.py`): its fields are its options, each with its default and help
written once (`option(...)`); construction checks them. Synthetic tasks subclass `SyntheticTask`
(`mesa_lm.data.synthetic`) and generate their data in `sample(batch, generator)`.

To add a task, write one module in this folder:

    @register_task
    @dataclass
    class MyTask(SyntheticTask):
        name = "my_task"                                   # what `train_lm.py --task` takes
        my_option: int = option(8, "what it sets", check=at_least(1))
        def sample(self, batch, generator): ...            # {"inputs", "targets"[, "target_mask"]}
        input_dim / output_dim / length / length_option    # properties

`train_lm.py` then takes `--task my_task --my_option 4` (and lists it under `--help`), and the trained model's
folder holds `task.json` (`save_task`), which every harness reads back (`load_task`) instead of asking again.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

from .base import Task

TASK_FILE = "task.json"

_REGISTRY: dict[str, type[Task]] = {}
_discovered = False


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make `cls` known under `cls.name`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice ({_REGISTRY[cls.name].__module__}, {cls.__module__})")
    _REGISTRY[cls.name] = cls
    return cls


def registered_tasks() -> dict[str, type[Task]]:
    """Every task, by name (the modules of this folder are imported on first use)."""
    global _discovered
    if not _discovered:
        _discovered = True
        for module in pkgutil.iter_modules(__path__):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")
    return dict(_REGISTRY)


def task_class(name: str) -> type[Task]:
    tasks = registered_tasks()
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(tasks)}")
    return tasks[name]


def make_task(name: str, **options: Any) -> Task:
    """The task `name` with `options` (the others at their defaults); unknown options are a one-line error."""
    cls = task_class(name)
    allowed = set(cls.option_names()) | ({"seed"} if "seed" in cls.__dataclass_fields__ else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{unknown[0]} is not an option of task {name!r}; its options: {', '.join(sorted(allowed))}")
    return cls(**options)


def task_from_dict(record: dict, where: str = "task record") -> Task:
    if not isinstance(record, dict) or not isinstance(record.get("task"), str):
        raise ValueError(f"{where} has no task name (expected {{\"task\": NAME, \"options\": {{...}}}})")
    options = dict(record.get("options") or {})
    if "seed" in record:
        options["seed"] = record["seed"]
    try:
        return make_task(record["task"], **options)
    except ValueError as error:
        raise ValueError(f"{where}: {error}")


def save_task(folder: str | Path, task: Task) -> Path:
    """Write `task.json` into `folder` (beside the model's `config.json`)."""
    path = Path(folder) / TASK_FILE
    path.write_text(json.dumps(task.to_dict(), indent=1) + "\n")
    return path


def load_task(folder: str | Path) -> Task | None:
    """The task a model folder was trained on, from its `task.json`; None for a folder saved without one."""
    path = Path(folder) / TASK_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({type(error).__name__})")
    return task_from_dict(record, str(path))
