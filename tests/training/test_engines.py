"""Under DeepSpeed, options its configuration also sets must agree with train_lm.py's, its "auto" entries become
train_lm.py's values, and what the trainer cannot do under it is a one-line error."""

import pytest

from mesa_lm.training.arguments import TrainArguments
from mesa_lm.training.engines import check_engine_options

DEEPSPEED = {"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0}


def test_agreeing_options_and_other_engines_pass():
    check_engine_options(TrainArguments(output_dir="unused"), "DEEPSPEED", dict(DEEPSPEED))
    args = TrainArguments(output_dir="unused", gradient_accumulation_steps=4, max_grad_norm=0.5, nonfinite="skip")
    for engine in ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP"):
        check_engine_options(args, engine, None)


@pytest.mark.parametrize("config", [{"gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}, {}])
@pytest.mark.parametrize("max_grad_norm", [0.5, 0.0])
def test_auto_entries_become_train_lm_values(config, max_grad_norm):
    """Accelerate would fill an "auto" clipping with its own 1.0, whatever --max_grad_norm says."""
    args, config = TrainArguments(output_dir="unused", max_grad_norm=max_grad_norm), dict(config)
    check_engine_options(args, "DEEPSPEED", config)
    assert config == {"gradient_accumulation_steps": 1, "gradient_clipping": max_grad_norm}


@pytest.mark.parametrize(
    "options, config, message",
    [
        ({"max_grad_norm": 0.5}, DEEPSPEED, "max_grad_norm=0.5 disagrees with the DeepSpeed configuration's "
         "gradient_clipping: 1.0; give both the same value (or set gradient_clipping: auto in the configuration)"),
        ({"gradient_accumulation_steps": 4}, DEEPSPEED, "gradient_accumulation_steps=4 is not supported under "
         "DeepSpeed, which steps inside backward and accumulates by its own count; use 1 with a larger "
         "per_device_train_batch_size, or another engine (DDP, FSDP2)"),
        ({}, {**DEEPSPEED, "gradient_accumulation_steps": 4}, "the DeepSpeed configuration's "
         "gradient_accumulation_steps is 4; under DeepSpeed the trainer needs 1 (or auto): raise "
         "per_device_train_batch_size instead"),
        ({"nonfinite": "skip"}, DEEPSPEED, "nonfinite='skip' is not supported under DeepSpeed, which has already "
         "applied the update when the trainer sees the loss and gradients; use --nonfinite stop"),
    ],
)
def test_what_deepspeed_cannot_do_is_one_line(options, config, message):
    with pytest.raises(ValueError) as error:
        check_engine_options(TrainArguments(output_dir="unused", **options), "DEEPSPEED", dict(config))
    assert str(error.value) == message
