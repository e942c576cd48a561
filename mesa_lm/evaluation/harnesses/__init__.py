"""The evaluation harnesses, one module per harness, registered by name. The command line (`eval/harness.py NAME`,
`eval/<name>.py`) and `compare` are built from this registry: neither names a harness.

To add a harness, write one module in this folder (or anywhere, imported before use):

    @register_harness
    class MyHarness(Harness):
        name, needs, description = "my_harness", "regression", "one line for --help"

        @dataclass
        class Options:
            \"\"\"my harness\"\"\"                             # the --help group title
            steps: int = harness_option(10, "what it sets (default: 10)", type=positive_int)

        def run(self, checkpoint, options, progress=True) -> dict: ...      # the result record (JSON-ready)
        def table(self, results) -> dict: ...                               # compare's table over the variants
        def figure(self, results, path): ...                                # compare's figure, or None

`from_task(task, checkpoint)` returns option values read from the model's saved task (`task.json`), used where an
option is left None; `applies_to(kind, task)` says which checkpoints it runs on (default: the kind in `needs`).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Harness, harness_option  # noqa: F401  (what a harness module imports)

_REGISTRY: dict[str, Harness] = {}
_discovered = False


def register_harness(cls: type[Harness]) -> type[Harness]:
    """Class decorator: make `cls` known under `cls.name` (one instance is kept)."""
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"harness {cls.name!r} is registered twice ({type(_REGISTRY[cls.name]).__module__}, "
                         f"{cls.__module__})")
    _REGISTRY[cls.name] = cls()
    return cls


def registered_harnesses() -> dict[str, Harness]:
    """Every harness, by name (the modules of this folder are imported on first use)."""
    global _discovered
    if not _discovered:
        _discovered = True
        for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if module.name != "base":
                importlib.import_module(f"{__name__}.{module.name}")
    return dict(_REGISTRY)


def get_harness(name: str) -> Harness:
    harnesses = registered_harnesses()
    if name not in harnesses:
        raise ValueError(f"unknown harness {name!r}; allowed: {', '.join(harnesses)}")
    return harnesses[name]
