"""Training the report's models through train_lm.py's own loop, and loading them back."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from ..models.mesa import MesaForCausalLM, MesaForCausalRegression
from ..training.arguments import TrainArguments
from ..training.checkpoints import list_checkpoints
from ..training.trainer import train


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a training run after it saved a checkpoint; rerunning the command resumes it."""


def train_model(out: Path, name: str, preset: str, quiet: bool = True, **options):
    """Train run preset `preset` with `options` through `train_lm.py`'s loop into `out/models/name`, reusing a
    finished run there and resuming an interrupted one from its latest checkpoint; return the model and its training
    results. Raises `TrainingInterrupted` when a signal stops the training (the checkpoint is saved first)."""
    folder = out / "models" / name
    results_file = folder / "train_results.json"
    args = TrainArguments.from_preset(preset, output_dir=str(folder), overwrite_output_dir=True, report_to="none",
                                      **options)
    if not results_file.is_file():
        if list_checkpoints(args.checkpoint_dir):
            args.resume_from_checkpoint = "latest"
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            trained = train(args)
        if "stopped_at_step" in trained:
            raise TrainingInterrupted(f"training of {name} stopped at step {trained['stopped_at_step']} (checkpoint "
                                      "saved)")
    model_class = MesaForCausalLM if args.task == "text" else MesaForCausalRegression
    model = model_class.from_pretrained(folder).eval()
    return model, json.loads(results_file.read_text())
