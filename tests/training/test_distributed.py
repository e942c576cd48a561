"""Two CPU processes under torchrun train as one process with twice the batch."""

import json
import sys
from pathlib import Path

import torch

from .runs import TINY, losses, max_weight_difference, run, weights

EPS32 = torch.finfo(torch.float32).eps


def test_two_process_cpu_run_equals_one_process_with_twice_the_batch(tmp_path):
    common = [*TINY, "--max_steps", "6", "--eval_steps", "3", "--save_steps", "0"]
    # --standalone: a free rendezvous port for every run
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    run([*common, "--output_dir", str(tmp_path / "two"), "--per_device_train_batch_size", "4"], launcher=torchrun)
    run([*common, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "8"])

    results = json.loads((tmp_path / "two" / "train_results.json").read_text())
    assert results["num_processes"] == 2
    assert results["parameters_identical_across_processes"] is True
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == 6
    # Each rank sees half of the global batch: had both seen the same rows, the curves would differ.
    # The runs differ only in the order of float32 sums (two all-reduced halves against one batch of 8), a few ulps per
    # step (measured: 1 ulp of the losses, 1.9e-7 in the weights): 64 eps of each quantity's magnitude is a margin of
    # 30x or more, and stays in proportion on any machine.
    assert max(abs(a - b) for a, b in zip(two, one)) <= 64 * EPS32 * max(map(abs, one))
    magnitude = max(w.abs().max().item() for w in weights(tmp_path / "one").values())
    assert max_weight_difference(tmp_path / "two", tmp_path / "one") <= 64 * EPS32 * magnitude
    eval_two = json.loads((Path(tmp_path) / "two" / "train_results.json").read_text())["eval_loss"]
    eval_one = json.loads((Path(tmp_path) / "one" / "train_results.json").read_text())["eval_loss"]
    assert abs(eval_two - eval_one) <= 64 * EPS32 * abs(eval_one)
