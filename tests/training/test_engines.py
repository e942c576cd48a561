"""Options an engine's configuration also sets must agree with train_lm.py's: a one-line error otherwise."""

import pytest

from mesa_lm.training.arguments import TrainArguments
from mesa_lm.training.engines import check_engine_options

DEEPSPEED = {"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0}


def test_agreeing_options_and_other_engines_pass():
    args = TrainArguments(output_dir="unused", gradient_accumulation_steps=4, max_grad_norm=0.5)
    check_engine_options(TrainArguments(output_dir="unused"), "DEEPSPEED", DEEPSPEED)
    check_engine_options(args, "DEEPSPEED", {"gradient_accumulation_steps": "auto", "gradient_clipping": "auto"})
    for engine in ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP"):
        check_engine_options(args, engine, None)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("gradient_accumulation_steps", 4, "gradient_accumulation_steps=4 disagrees with the DeepSpeed "
         "configuration's gradient_accumulation_steps: 1; give both the same value (or set "
         "gradient_accumulation_steps: auto in the configuration)"),
        ("max_grad_norm", 0.5, "max_grad_norm=0.5 disagrees with the DeepSpeed configuration's gradient_clipping: "
         "1.0; give both the same value (or set gradient_clipping: auto in the configuration)"),
    ],
)
def test_a_disagreement_with_deepspeed_is_one_line(option, value, message):
    with pytest.raises(ValueError) as error:
        check_engine_options(TrainArguments(output_dir="unused", **{option: value}), "DEEPSPEED", DEEPSPEED)
    assert str(error.value) == message
