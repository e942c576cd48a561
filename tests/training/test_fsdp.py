"""FSDP2: a softmax+linear+mesa model sharded per block with `fully_shard` over two gloo processes trains exactly like
one process with the same global batch (mesa's autograd function, tied embeddings and resharding included), in
float64 so the comparison is exact up to rounding on any CPU."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mesa_lm import MesaForCausalLM
from mesa_lm.training.checkpoints import verify_folder

from . import runs

WORKER = Path(__file__).with_name("fsdp_worker.py")
ROOT = WORKER.parents[2]


def train(out: Path, processes: int, *extra: str) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**runs.env(), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [*launcher, str(WORKER), "--out", str(out), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out)


STEPS = ["--steps", "6"]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> dict:
    """Six uninterrupted steps with two FSDP2 processes."""
    return train(tmp_path_factory.mktemp("fsdp") / "fsdp.pt", 2, *STEPS)


def test_fsdp2_two_processes_equal_one_process_with_the_same_global_batch(sharded, tmp_path):
    plain = train(tmp_path / "plain.pt", 1, *STEPS)
    assert len(sharded["losses"]) == len(plain["losses"]) == 6
    assert max(abs(a - b) for a, b in zip(sharded["losses"], plain["losses"])) <= 1e-10  # float64 (see the worker)
    # The tied embedding's gradient is complete: its uses as input embedding and as output head both arrived.
    embed_scale = plain["embed_grad"].abs().max().item()
    assert (sharded["embed_grad"] - plain["embed_grad"]).abs().max() <= 1e-10 * embed_scale
    assert sharded["params"].keys() == plain["params"].keys()
    for name, p in plain["params"].items():
        assert (sharded["params"][name] - p).abs().max() <= 1e-10, name


def test_fsdp2_checkpoint_at_step_3_resumes_exactly_and_ends_in_one_from_pretrained_folder(sharded, tmp_path):
    """The optimizer's moments are sharded too: a checkpoint written by two FSDP processes holds every shard (in the
    format one process writes), and resuming with two processes ends where the uninterrupted run ends."""
    whole, args = sharded, STEPS
    checkpoints = tmp_path / "checkpoints"
    train(tmp_path / "first.pt", 2, *args, "--save_at", "3", "--checkpoint_dir", str(checkpoints))
    step3 = checkpoints / "step-3"
    moments = torch.load(step3 / "optimizer.pt", weights_only=True)["state"]
    assert len(moments) == len(whole["params"])  # every parameter's moments, not the main process's shard only
    assert all(m["exp_avg"].shape == p.shape for m, p in zip(moments.values(), whole["params"].values()))
    final = tmp_path / "final"
    resumed = train(tmp_path / "resumed.pt", 2, *args, "--resume", str(step3), "--final_dir", str(final))
    assert len(resumed["losses"]) == 3
    assert max(abs(a - b) for a, b in zip(resumed["losses"], whole["losses"][3:])) <= 1e-10
    for name, p in whole["params"].items():
        assert (resumed["params"][name] - p).abs().max() <= 1e-10, name  # float64; the acceptance asks 1e-6
    assert verify_folder(final) is None  # checksummed, consolidated: full tensors, loadable by from_pretrained
    saved = load_file(str(final / "model.safetensors"))
    loaded = MesaForCausalLM.from_pretrained(final, dtype=torch.float64)
    for name, p in loaded.named_parameters():
        assert torch.equal(p.detach(), resumed["params"][name]), name
    assert saved["model.embed_tokens.weight"].shape == whole["params"]["model.embed_tokens.weight"].shape
