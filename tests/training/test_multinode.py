"""Two "nodes" on this machine's loopback (one process each, a c10d rendezvous on a free port) train exactly like one
process with the same global batch: under torchrun and under accelerate launch."""

import socket
import subprocess
import sys
import time

import pytest
import torch

from .runs import TINY, TRAIN_LM, env, losses, max_weight_difference, run, weights

EPS32 = torch.finfo(torch.float32).eps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_node(rank: int, port: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank),
        "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", f"mesa-{port}",
    ]  # fmt: skip


def accelerate_node(rank: int, port: int) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
        "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), "--mixed_precision", "no",
        "--dynamo_backend", "no",
    ]  # fmt: skip


def run_two_nodes(launcher, args: list[str], timeout: float = 240) -> None:
    """Start both nodes, wait for both; if either fails or they outlive `timeout`, stop both and show both outputs."""
    port = free_port()
    nodes = [
        subprocess.Popen([*launcher(rank, port), TRAIN_LM, *args], env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]  # fmt: skip
    deadline = time.monotonic() + timeout
    while any(node.poll() is None for node in nodes) and time.monotonic() < deadline:
        if any(node.poll() not in (None, 0) for node in nodes):
            break  # one node failed: the other would wait for it until its own timeout
        time.sleep(0.2)
    for node in nodes:
        if node.poll() is None:
            node.kill()
    outputs = [node.communicate()[0] for node in nodes]
    report = "\n".join(f"--- node {rank} (exit {node.returncode}):\n{out[-3000:]}" for rank, (node, out)
                       in enumerate(zip(nodes, outputs)))
    assert all(node.returncode == 0 for node in nodes), report


@pytest.mark.parametrize("launcher", [torchrun_node, accelerate_node], ids=["torchrun", "accelerate"])
def test_two_nodes_equal_one_process_with_the_same_global_batch(launcher, tmp_path):
    common = [*TINY, "--max_steps", "5", "--eval_steps", "5", "--save_steps", "0"]
    run_two_nodes(launcher, [*common, "--output_dir", str(tmp_path / "two"), "--per_device_train_batch_size", "4"])
    run([*common, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "8"])
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == 5
    # Float32 sums in another order: 64 eps of each quantity's magnitude (as in test_distributed.py).
    assert max(abs(a - b) for a, b in zip(two, one)) <= 64 * EPS32 * max(map(abs, one))
    magnitude = max(w.abs().max().item() for w in weights(tmp_path / "one").values())
    assert max_weight_difference(tmp_path / "two", tmp_path / "one") <= 64 * EPS32 * magnitude
