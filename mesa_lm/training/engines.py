"""Options of `train_lm.py` that an engine's own configuration also sets: they must agree, or the run stops before
anything is written with one line naming both values."""

from __future__ import annotations

from .arguments import TrainArguments


def check_engine_options(args: TrainArguments, engine: str, engine_config: dict | None) -> None:
    """`engine` is Accelerate's distributed type name; `engine_config` the DeepSpeed configuration (a dict) under
    DEEPSPEED, which this completes in place before Accelerate hands it to DeepSpeed.

    DeepSpeed clips and steps inside `accelerator.backward` (every Accelerate version in the matrix), while the trainer
    accumulates micro-batches itself and then decides whether to step. So under DeepSpeed:
    - `--gradient_accumulation_steps` must be 1: with more, DeepSpeed would divide the loss a second time by its own
      accumulation count, and step on every micro-batch or on its own boundaries instead of the trainer's;
    - `--nonfinite skip` cannot skip an update DeepSpeed has already made: only `stop` is allowed;
    - DeepSpeed's clipping is `--max_grad_norm` (0: none): a "gradient_clipping" that is "auto" or absent is filled
      in with it (Accelerate would fill in its own 1.0), and any other value must equal it."""
    if engine != "DEEPSPEED" or engine_config is None:
        return
    if args.gradient_accumulation_steps != 1:
        raise ValueError(
            f"gradient_accumulation_steps={args.gradient_accumulation_steps!r} is not supported under DeepSpeed, "
            "which steps inside backward and accumulates by its own count; use 1 with a larger "
            "per_device_train_batch_size, or another engine (DDP, FSDP2)"
        )
    if args.nonfinite != "stop":
        raise ValueError(
            f"nonfinite={args.nonfinite!r} is not supported under DeepSpeed, which has already applied the update "
            "when the trainer sees the loss and gradients; use --nonfinite stop"
        )
    accumulation = engine_config.get("gradient_accumulation_steps", "auto")
    if accumulation != "auto" and float(accumulation) != 1:
        raise ValueError(
            f"the DeepSpeed configuration's gradient_accumulation_steps is {accumulation!r}; under DeepSpeed the "
            "trainer needs 1 (or auto): raise per_device_train_batch_size instead"
        )
    engine_config["gradient_accumulation_steps"] = 1
    clipping = engine_config.get("gradient_clipping", "auto")
    if clipping == "auto":
        engine_config["gradient_clipping"] = float(args.max_grad_norm)
    elif float(clipping) != float(args.max_grad_norm):
        raise ValueError(
            f"max_grad_norm={args.max_grad_norm!r} disagrees with the DeepSpeed configuration's gradient_clipping: "
            f"{clipping!r}; give both the same value (or set gradient_clipping: auto in the configuration)"
        )
