"""Elastic resume: a run checkpointed with N processes resumes with M (the global batch kept) and ends where an
uninterrupted run ends."""

import signal
import subprocess
import sys

import pytest
import torch

from .runs import TINY, TRAIN_LM, env, max_weight_difference, run, weights
from .test_resume import wait_for

GLOBAL_BATCH = 64  # large enough that a run outlives the moment its step-10 checkpoint appears
ARGS = [*TINY, "--max_steps", "60", "--eval_steps", "0", "--save_steps", "10"]


def launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]


def batch(processes: int) -> list[str]:
    return ["--per_device_train_batch_size", str(GLOBAL_BATCH // processes)]


@pytest.mark.parametrize("before, after", [(2, 1), (1, 2)], ids=["2->1", "1->2"])
def test_checkpoint_with_n_processes_resumes_with_m(before, after, tmp_path):
    out = tmp_path / "elastic"
    process = subprocess.Popen(
        [*launcher(before), TRAIN_LM, *ARGS, *batch(before), "--output_dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    wait_for(out / "checkpoints" / "step-10", process)
    process.send_signal(signal.SIGTERM)  # a preemption: torchrun passes it on, and each worker saves and stops
    _, stderr = process.communicate(timeout=120)
    assert not (out / "model.safetensors").exists(), "the run finished before it was stopped"

    resumed = run([*ARGS, *batch(after), "--output_dir", str(out), "--resume_from_checkpoint", "latest"],
                  launcher=launcher(after))  # fmt: skip
    assert "resumed from" in resumed.stdout
    run([*ARGS, *batch(1), "--output_dir", str(tmp_path / "straight")])
    magnitude = max(w.abs().max().item() for w in weights(tmp_path / "straight").values())
    # float32 sums in another order (two all-reduced halves against one batch): 64 eps of the weights' magnitude
    assert max_weight_difference(out, tmp_path / "straight") <= 64 * torch.finfo(torch.float32).eps * magnitude
