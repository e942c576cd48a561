"""FSDP2: a softmax+linear+mesa model sharded per block with `fully_shard` over two gloo processes trains exactly like
one process with the same global batch (mesa's autograd function, tied embeddings and resharding included), in
float64 so the comparison is exact up to rounding on any CPU."""

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("fsdp_worker.py")
ROOT = WORKER.parents[2]


def train(out: Path, processes: int) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*launcher, str(WORKER), "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out)


def test_fsdp2_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    sharded, plain = train(tmp_path / "fsdp.pt", 2), train(tmp_path / "plain.pt", 1)
    assert len(sharded["losses"]) == len(plain["losses"]) == 4
    assert max(abs(a - b) for a, b in zip(sharded["losses"], plain["losses"])) <= 1e-10  # float64 (see the worker)
    # The tied embedding's gradient is complete: its uses as input embedding and as output head both arrived.
    embed_scale = plain["embed_grad"].abs().max().item()
    assert (sharded["embed_grad"] - plain["embed_grad"]).abs().max() <= 1e-10 * embed_scale
    assert sharded["params"].keys() == plain["params"].keys()
    for name, p in plain["params"].items():
        assert (sharded["params"][name] - p).abs().max() <= 1e-10, name
