"""Atomic, rotating training checkpoints (accelerate `save_state`) and finding the one to resume from."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoints (`step-N` folders with a trainer state), oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.iterdir() if STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def resolve_resume_path(resume: str, checkpoint_dir: Path) -> Path:
    """`latest` -> the newest checkpoint in `checkpoint_dir`; else the given folder, which must be a checkpoint."""
    if resume == "latest":
        checkpoints = list_checkpoints(checkpoint_dir)
        if not checkpoints:
            raise ValueError(f"resume_from_checkpoint='latest' but {checkpoint_dir} holds no checkpoint")
        return checkpoints[-1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"resume_from_checkpoint={resume!r} is not a checkpoint folder (no {STATE_FILE} in it)")
    return path


def drop_tied_copies(models: list, weights: list[dict], output_dir: str) -> None:
    """`Accelerator.save_state` pre-hook: leave each model's declared tied copies out of its state dict.

    safetensors holds one name per tensor, so accelerate drops the alias of a tied `lm_head.weight` itself, but warns
    "Removed shared tensor ... while saving" at every checkpoint. Dropping only the ties the model declares (and
    that really share storage) keeps that warning for any other shared tensor. Loading is unchanged: safetensors'
    `load_model` accepts a missing alias of a stored tensor, as it did when accelerate removed it.
    """
    for model, state in zip(models, weights):
        inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
        prefix = "module." if inner is not model else ""
        ties = getattr(inner, "_tied_weights_keys", None)
        for copy, source in (ties.items() if isinstance(ties, dict) else ()):
            a, b = state.get(prefix + copy), state.get(prefix + source)
            if type(a) is torch.Tensor and type(b) is torch.Tensor and _same_storage(a, b):
                del state[prefix + copy]


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def save_checkpoint(accelerator, checkpoint_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Save into a temporary folder, then rename it to `step-N`: an interrupted save never looks complete.

    Every process writes its part (its RNG state), so all must call this; the main process renames and rotates.
    """
    final = checkpoint_dir / f"step-{step}"
    tmp = checkpoint_dir / f".tmp-step-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(checkpoint_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_trainer_state(path: Path) -> dict:
    return json.loads((path / STATE_FILE).read_text())
