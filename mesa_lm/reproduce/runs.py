"""Training the report's models through train_lm.py's own loop, and loading them back."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from ..models.mesa import MesaForCausalLM, MesaForCausalRegression
from ..training.arguments import TrainArguments
from ..training.trainer import train


def train_model(out: Path, name: str, preset: str, quiet: bool = True, **options):
    """Train run preset `preset` with `options` through `train_lm.py`'s loop into `out/models/name` (reused if a
    finished run is there); return the model and its training results."""
    folder = out / "models" / name
    results_file = folder / "train_results.json"
    args = TrainArguments.from_preset(preset, output_dir=str(folder), overwrite_output_dir=True, report_to="none",
                                      **options)
    if not results_file.is_file():
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            train(args)
    model_class = MesaForCausalLM if args.task == "text" else MesaForCausalRegression
    model = model_class.from_pretrained(folder).eval()
    return model, json.loads(results_file.read_text())
