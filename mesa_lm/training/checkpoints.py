"""Training checkpoints and final models you can trust: no pickle, a checksum manifest, atomic writes.

A checkpoint `output_dir/checkpoints/step-N` holds

- `model.safetensors`: the model's weights;
- `optimizer.pt` (and `scaler.pt` under fp16): tensors and numbers only, loaded with `torch.load(weights_only=True)`;
- `rng_state_<rank>.safetensors` / `rng_state_<rank>.json`: each process's random generators;
- `trainer_state.json`: step, tokens seen and the learning-rate schedule's state;
- `manifest.json`, written last: the size and sha256 of every other file.

Under FSDP2 the model and optimizer are gathered into full tensors first (`sharded_state.py`): a checkpoint has the
same files and format whatever engine and number of processes wrote it.

It is written into `.tmp-step-N` and renamed when complete. Resuming verifies the manifest (any missing, changed or
unlisted file, a `.pkl` included, makes a checkpoint corrupt) and falls back to the newest intact checkpoint with a
one-line warning. The final model gets the same manifest, and its files are moved into place only once all are
written.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import re
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..cli_options import first_line
from .sharded_state import full_tensors, shard_optimizer_state

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCALER_FILE = "scaler.pt"
MANIFEST_FORMAT = "mesa-lm-manifest-1"


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, a full disk, ...): reported in one line, exit status 1."""


def _disk_error(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text


def raise_if_disk_full(error: BaseException, what: str, kept: str = "") -> None:
    """Turn a full disk (however the writing library reports it) into a one-line `TrainingError`."""
    if _disk_error(error):
        raise TrainingError(f"disk full: no space left on device while writing {what}{kept}") from error


def write_bytes(path: Path, data: bytes) -> None:
    """Write a whole file and flush it to disk (every checkpoint and manifest file goes through here)."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def write_json_atomic(path: Path, value) -> None:
    """Write a JSON file under a temporary name, then rename: readers see the old or the new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        write_bytes(tmp, json.dumps(value, indent=2, default=str).encode())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise_if_disk_full(error, str(path))
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, names: list[str] | None = None) -> None:
    """`manifest.json`: size and sha256 of the files `names` (default: every file in `folder`), written last."""
    folder = Path(folder)
    if names is None:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    files = {name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in names}
    write_bytes(folder / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1).encode())


def verify_folder(folder: Path, exhaustive: bool = True) -> str | None:
    """Why `folder` cannot be trusted (a missing, changed or unlisted file), or None if its manifest holds.

    With `exhaustive`, a file the manifest does not list (a planted `.pkl`, say) also makes it untrustworthy.
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            return f"{MANIFEST} is not a mesa-lm manifest"
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} is unreadable"
    for name, entry in files.items():
        path = folder / name
        if not isinstance(entry, dict) or "/" in name or name.startswith("."):
            return f"{MANIFEST} is unreadable"
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry.get("size"):
            return f"{name} has {path.stat().st_size} bytes, {entry.get('size')} expected"
        if _sha256(path) != entry.get("sha256"):
            return f"{name} does not match its checksum"
    if exhaustive:
        extra = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in files)
        if extra:
            return f"{extra[0]} is not part of the checkpoint (refused: only listed files are loaded)"
    return None


# --- checkpoints ----------------------------------------------------------------------------------------------------


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Checkpoint folders (`step-N`), oldest first; whether each is intact is `verify_checkpoint`'s business."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.iterdir() if STEP_DIR.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def verify_checkpoint(path: Path) -> str | None:
    """Why checkpoint `path` cannot be resumed from, or None."""
    reason = verify_folder(path)
    if reason is not None:
        return reason
    try:
        state = load_trainer_state(path)
    except ValueError as error:
        return str(error)
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        if not (path / name).is_file():
            return f"{name} is missing"
    if not isinstance(state.get("step"), int) or not isinstance(state.get("tokens_seen"), int):
        return f"{STATE_FILE} lacks the step or tokens seen"
    return None


def resolve_resume_path(resume: str, checkpoint_dir: Path, warn=None) -> Path:
    """`latest` -> the newest intact checkpoint in `checkpoint_dir`, warning (one line each) about newer corrupt ones;
    else the given folder, which must be an intact checkpoint. Raises ValueError naming the problem."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir() or not ((path / STATE_FILE).is_file() or (path / MANIFEST).is_file()):
            raise ValueError(f"resume_from_checkpoint={resume!r} is not a checkpoint folder (no {STATE_FILE} in it)")
        reason = verify_checkpoint(path)
        if reason is not None:
            raise ValueError(f"checkpoint {str(path)!r} is corrupt: {reason}")
        return path
    checkpoints = list_checkpoints(checkpoint_dir)
    if not checkpoints:
        raise ValueError(f"resume_from_checkpoint='latest' but {checkpoint_dir} holds no checkpoint")
    skipped = []
    for path in reversed(checkpoints):
        reason = verify_checkpoint(path)
        if reason is None:
            for bad, why in skipped:
                warn(f"warning: skipping corrupt checkpoint {bad}: {why}; resuming from {path.name}")
            return path
        skipped.append((path, reason))
    bad, why = skipped[0]
    raise ValueError(f"no intact checkpoint in {checkpoint_dir}: the newest, {bad.name}, is corrupt ({why})"
                     + (f", and {len(skipped) - 1} older one(s) too" if len(skipped) > 1 else ""))


def load_trainer_state(path: Path) -> dict:
    try:
        state = json.loads((Path(path) / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{STATE_FILE} is unreadable ({type(error).__name__})")
    if not isinstance(state, dict):
        raise ValueError(f"{STATE_FILE} is not a JSON object")
    return state


def _model_tensors(state_dict: dict) -> dict[str, torch.Tensor]:
    # clones: tied weights share storage, which safetensors refuses to write twice
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}


def _torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)  # into memory: a full disk then surfaces as OSError(ENOSPC) from write_bytes
    return buffer.getvalue()


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = state
    version, internal, gauss = random.getstate()
    plain = {"python": [version, list(internal), gauss]}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        plain["numpy"] = [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:
        pass
    return tensors, plain


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda_")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in plain:
        import numpy as np

        kind, keys, pos, has_gauss, cached = plain["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(accelerator, checkpoint_dir: Path, step: int, state: dict, keep: int, model, optimizer,
                    schedule) -> Path:
    """Save into `.tmp-step-N`, write the manifest, then rename it to `step-N`: an interrupted save never looks
    complete. Every process writes its random state, so all must call this; the main process writes the rest,
    renames and rotates. A full disk removes the partial folder and raises `TrainingError`."""
    checkpoint_dir = Path(checkpoint_dir)
    final = checkpoint_dir / f"step-{step}"
    tmp = checkpoint_dir / f".tmp-step-{step}"
    rank = accelerator.process_index
    failure = None
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        # every process: gathers sharded (FSDP) weights and optimizer moments; a no-op for unsharded ones
        full_model_state = full_tensors(accelerator.get_state_dict(model))
        optimizer_state = full_tensors(optimizer.state_dict())
        tensors, plain = _rng_state()
        write_bytes(tmp / f"rng_state_{rank}.safetensors", save_safetensors(tensors))
        write_bytes(tmp / f"rng_state_{rank}.json", json.dumps(plain).encode())
        if accelerator.is_main_process:
            write_bytes(tmp / MODEL_FILE, save_safetensors(_model_tensors(full_model_state)))
            write_bytes(tmp / OPTIMIZER_FILE, _torch_bytes(optimizer_state))
            if accelerator.scaler is not None:
                write_bytes(tmp / SCALER_FILE, _torch_bytes(accelerator.scaler.state_dict()))
            full_state = {**state, "scheduler": schedule.state_dict(), "num_processes": accelerator.num_processes}
            write_bytes(tmp / STATE_FILE, json.dumps(full_state, indent=2, default=str).encode())
    except OSError as error:
        failure = error
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and failure is None:
        try:
            write_manifest(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        except OSError as error:
            failure = error
    if failure is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        intact = [p for p in list_checkpoints(checkpoint_dir) if p != final]
        kept = f"; the last good checkpoint, {intact[-1]}, is kept" if intact else ""
        raise_if_disk_full(failure, f"checkpoint {final}", kept)
        raise failure
    if accelerator.is_main_process:
        for old in list_checkpoints(checkpoint_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def check_model_shapes(path: Path, model) -> None:
    """A one-line error if checkpoint `path` holds a model of another shape than `model` (before loading anything)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(Path(path) / MODEL_FILE), framework="pt") as file:
        saved = {k: tuple(file.get_slice(k).get_shape()) for k in file.keys()}
    for name in sorted(set(expected) | set(saved)):
        if expected.get(name) != saved.get(name):
            there = list(saved[name]) if name in saved else "absent"
            here = list(expected[name]) if name in expected else "absent"
            raise ValueError(f"checkpoint {str(path)!r} holds a model of another shape ({name}: {there} there, "
                             f"{here} here); resume with the options the run was started with")


def load_checkpoint(path: Path, model, optimizer, schedule, rank: int = 0) -> dict:
    """Load a verified checkpoint into the (unprepared) model, optimizer and schedule; return its trainer state.

    Nothing is unpickled: tensors come from safetensors, the optimizer with `weights_only=True`."""
    path = Path(path)
    check_model_shapes(path, model)
    state = load_trainer_state(path)
    try:
        model.load_state_dict(load_safetensors((path / MODEL_FILE).read_bytes()))
        optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True))
        if "scheduler" in state:
            schedule.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
        rng_tensors = path / f"rng_state_{rank}.safetensors"
        if rng_tensors.is_file():
            _set_rng_state(load_safetensors(rng_tensors.read_bytes()),
                           json.loads((path / f"rng_state_{rank}.json").read_text()))
    except Exception as error:  # pickle.UnpicklingError (refused by weights_only), shape or key mismatches, ...
        first = first_line(error)
        raise ValueError(f"checkpoint {str(path)!r} cannot be loaded: {type(error).__name__}: {first[:300]}")
    return state


def load_sharded_optimizer(path: Path, optimizer) -> None:
    """Load a checkpoint's (full) optimizer state into an optimizer over FSDP2-sharded parameters, each process
    taking its shard of every moment. Called after the engine has sharded the model (`load_checkpoint` loaded the
    unsharded optimizer, which the engine then replaced)."""
    try:
        full = torch.load(Path(path) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(shard_optimizer_state(full, optimizer))
    except Exception as error:
        first = first_line(error)
        raise ValueError(f"checkpoint {str(path)!r} cannot be loaded into the sharded optimizer: "
                         f"{type(error).__name__}: {first[:300]}")


def load_scaler(path: Path, accelerator) -> None:
    """fp16's grad-scaler state (it exists once the Accelerator does)."""
    if accelerator.scaler is not None and (Path(path) / SCALER_FILE).is_file():
        accelerator.scaler.load_state_dict(torch.load(Path(path) / SCALER_FILE, weights_only=True))


# --- the final model ------------------------------------------------------------------------------------------------


def save_final(out: Path, write) -> list[str]:
    """Write the final model with `write(folder)` into `out/.tmp-final`, add a manifest, then move the files into
    `out` (the manifest last). A failure or a full disk leaves `out`'s files untouched."""
    out = Path(out)
    tmp = out / ".tmp-final"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        names = sorted(p.name for p in tmp.iterdir() if p.is_file() and p.name != MANIFEST)
        write_manifest(tmp, names)
        # weights before config.json, the manifest last: a reader that sees the new manifest sees every new file
        order = sorted(names, key=lambda n: (n == "config.json", n))
        for name in [*order, MANIFEST]:
            os.replace(tmp / name, out / name)
    except Exception as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_if_disk_full(error, f"the final model in {out}", "; the checkpoints are kept")
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return names
