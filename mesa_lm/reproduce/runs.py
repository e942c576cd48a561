"""Training the report's models through train_lm.py's own loop, and loading them back."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

from ..models.mesa import MesaForCausalLM, MesaForCausalRegression
from ..training.arguments import TrainArguments
from ..training.checkpoints import list_checkpoints, resolve_resume_path
from ..training.trainer import train


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a training run after it saved a checkpoint; rerunning the command resumes it."""


def same_run(args: TrainArguments, folder: Path) -> bool:
    """Whether `folder` holds (the start of) a run with these arguments, by its saved `train_args.json`."""
    saved_file = folder / "train_args.json"
    if not saved_file.is_file():
        return False
    varying = {"output_dir", "overwrite_output_dir", "resume_from_checkpoint"}
    current = json.loads(json.dumps(dataclasses.asdict(args), default=str))
    saved = json.loads(saved_file.read_text())
    return {k: v for k, v in saved.items() if k not in varying} == {k: v for k, v in current.items() if k not in varying}


def train_model(out: Path, name: str, preset: str, quiet: bool = True, **options):
    """Train run preset `preset` with `options` through `train_lm.py`'s loop into `out/models/name`, reusing a
    finished run there with the same arguments and resuming an interrupted one from its latest checkpoint (a run with
    other arguments is replaced); return the model and its training results. Raises `TrainingInterrupted` when a signal stops the training (the checkpoint is saved first)."""
    folder = out / "models" / name
    results_file = folder / "train_results.json"
    args = TrainArguments.from_preset(preset, output_dir=str(folder), overwrite_output_dir=True, report_to="none",
                                      **options)
    if not same_run(args, folder):  # another budget or setting trained this folder: start over
        results_file.unlink(missing_ok=True)
    elif not results_file.is_file() and list_checkpoints(args.checkpoint_dir):
        try:  # only an intact checkpoint is resumed; with none, the run starts over
            resolve_resume_path("latest", args.checkpoint_dir)
            args.resume_from_checkpoint = "latest"
        except ValueError:
            pass
    if not results_file.is_file():
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            trained = train(args)
        if "stopped_at_step" in trained:
            raise TrainingInterrupted(f"training of {name} stopped at step {trained['stopped_at_step']} (checkpoint "
                                      "saved)")
    model_class = MesaForCausalLM if args.task == "text" else MesaForCausalRegression
    model = model_class.from_pretrained(folder).eval()
    return model, json.loads(results_file.read_text())
