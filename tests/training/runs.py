"""Helpers to run train_lm.py as users do: in a subprocess, with tiny settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
TRAIN_LM = str(REPO / "train_lm.py")

# A tiny hybrid on dynamics: seconds per run on 2 cores.
TINY = [
    "--preset", "hybrid-mesa",
    "--config_overrides", '{"hidden_size": 16, "head_dim": 8, "intermediate_size": 32, "num_attention_heads": 2}',
    "--seq_len", "12",
    "--per_device_eval_batch_size", "8",
    "--eval_batches", "2",
    "--warmup_steps", "3",
    "--logging_steps", "1",
    "--report_to", "none",
]


# Set by a launcher for its workers: a child launched from a process that carries them would join the wrong group.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


def env() -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES and not k.startswith("ACCELERATE_")}
    return {**clean, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(args, launcher=(sys.executable,), check=True, timeout=300) -> subprocess.CompletedProcess:
    result = subprocess.run([*launcher, TRAIN_LM, *args], capture_output=True, text=True, env=env(), timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def losses(output_dir) -> list[float]:
    lines = (Path(output_dir) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


def weights(output_dir) -> dict[str, torch.Tensor]:
    return load_file(str(Path(output_dir) / "model.safetensors"))


def max_weight_difference(a, b) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)
