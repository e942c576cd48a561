"""Options of `train_lm.py` that an engine's own configuration also sets: they must agree, or the run stops before
anything is written with one line naming both values."""

from __future__ import annotations

from .arguments import TrainArguments


def check_engine_options(args: TrainArguments, engine: str, engine_config: dict | None) -> None:
    """`engine` is Accelerate's distributed type name; `engine_config` the DeepSpeed configuration (a dict) under
    DEEPSPEED. DeepSpeed accumulates and clips gradients itself, from its file: `--gradient_accumulation_steps` and
    `--max_grad_norm` must say the same (or the file says "auto" and Accelerate fills in ours)."""
    if engine != "DEEPSPEED" or not engine_config:
        return
    pairs = (
        ("gradient_accumulation_steps", args.gradient_accumulation_steps, "gradient_accumulation_steps"),
        ("max_grad_norm", args.max_grad_norm, "gradient_clipping"),
    )
    for option, ours, key in pairs:
        theirs = engine_config.get(key, "auto")
        if theirs != "auto" and float(theirs) != float(ours):
            raise ValueError(f"{option}={ours!r} disagrees with the DeepSpeed configuration's {key}: {theirs!r}; "
                             f"give both the same value (or set {key}: auto in the configuration)")
