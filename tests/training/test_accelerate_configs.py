"""The launch configurations in configs/accelerate/: Accelerate loads every one; the CPU one trains like one process."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file

from mesa_lm import MesaForCausalLM

from .runs import REPO, TINY, TRAIN_LM, env, losses, run
from .test_multinode import free_port

CONFIGS = REPO / "configs" / "accelerate"
EXPECTED = {
    "cpu_multiprocess.yaml": ("MULTI_GPU", "no"),  # the multi-process launcher; train_lm.py runs it on CPU over gloo
    "one_gpu.yaml": ("NO", "bf16"),
    "multi_gpu_ddp.yaml": ("MULTI_GPU", "bf16"),
    "fsdp2.yaml": ("FSDP", "bf16"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", "bf16"),
    "deepspeed_zero3.yaml": ("DEEPSPEED", "bf16"),
}


def test_every_config_is_listed_here():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_loads_the_config(name):
    config = load_config_from_file(str(CONFIGS / name))
    distributed_type, precision = EXPECTED[name]
    assert config.distributed_type.name == distributed_type and config.mixed_precision == precision
    if distributed_type == "FSDP":
        fsdp = config.fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] in MesaForCausalLM._no_split_modules
    if distributed_type == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-6])


def test_cpu_config_trains_two_processes_like_one(tmp_path: Path):
    common = [*TINY, "--max_steps", "4", "--eval_steps", "4", "--save_steps", "0"]
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu_multiprocess.yaml"),
        "--main_process_port", str(free_port()),
    ]  # fmt: skip
    two = tmp_path / "two"
    result = subprocess.run(
        [*launcher, TRAIN_LM, *common, "--output_dir", str(two), "--per_device_train_batch_size", "4"],
        env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert '"num_processes": 2' in (two / "train_results.json").read_text()
    run([*common, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "8"])
    eps = torch.finfo(torch.float32).eps
    one = losses(tmp_path / "one")
    assert max(abs(a - b) for a, b in zip(losses(two), one)) <= 64 * eps * max(map(abs, one))
