"""Stand-ins for the modules that transformers' common tests import but its sdist does not ship.

The sdist holds only the top-level `tests/*.py` files. `test_modeling_common.py` imports `ExportTesterMixin` (from
`tests/exporters/`, the base class of `ModelTesterMixin`) and `GenerationTesterMixin` (from `tests/generation/`,
used there only in `issubclass` checks); `test_configuration_common.py` imports `config_common_kwargs` (from
`tests/utils/`). The two mixins become empty classes, so their tests are not run (listed in docs/compatibility.md);
`config_common_kwargs` is written here: a non-default value for every common field of the installed
`PreTrainedConfig`, which `ConfigTester.check_config_arguments_init` passes to the config and reads back.
A module is shimmed only if the extracted tree lacks it: a future sdist that ships it is used as is.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path


class ExportTesterMixin:
    """Empty: `tests/exporters/test_export.py` is not in the sdist, so no export tests run."""


class GenerationTesterMixin:
    """Empty: `tests/generation/test_utils.py` is not in the sdist, so no generation tests run."""


def _config_common_kwargs() -> dict:
    """Non-default values for the fields every `PreTrainedConfig` has (only those the installed version defines)."""
    from transformers import PretrainedConfig

    candidates = {
        "return_dict": False,
        "output_hidden_states": True,
        "dtype": "float16",  # ConfigTester compares it with torch.float16
        "chunk_size_feed_forward": 5,
        "architectures": ["MesaShimModel"],
        "id2label": {0: "negative", 1: "positive", 2: "neutral"},
        "label2id": {"negative": 0, "positive": 1, "neutral": 2},
        "problem_type": "regression",
    }
    probe = PretrainedConfig()
    return {key: value for key, value in candidates.items() if hasattr(probe, key)}


def _module(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    if path is not None:
        module.__path__ = [str(path)]
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def install(package: str, package_dir: Path) -> None:
    """Register the missing modules under `package` in `sys.modules` before the upstream files are imported."""
    shims = {
        "exporters/test_export.py": {"ExportTesterMixin": ExportTesterMixin},
        "generation/test_utils.py": {"GenerationTesterMixin": GenerationTesterMixin},
        "utils/test_configuration_utils.py": {"config_common_kwargs": _config_common_kwargs()},
    }
    for rel, attrs in shims.items():
        if (package_dir / rel).is_file():
            continue
        subpackage, module = rel[: -len(".py")].split("/")
        if (package_dir / subpackage / "__init__.py").is_file():
            raise RuntimeError(f"{package_dir / subpackage} exists without {module}.py: cannot shim it")
        parent = sys.modules.get(f"{package}.{subpackage}") or _module(
            f"{package}.{subpackage}", package_dir / subpackage
        )
        child = _module(f"{package}.{subpackage}.{module}", **attrs)
        setattr(parent, module, child)
