"""Train a softmax+linear+mesa model for a few steps, sharded with FSDP2 (`fully_shard`) over gloo when launched with
several processes, plain otherwise; write the global loss per step, the tied embedding's first gradient and the final
parameters (full tensors) to `--out`. Run by tests/training/test_fsdp.py under torchrun."""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from mesa_lm import MesaConfig, MesaForCausalLM

VOCAB, GLOBAL_BATCH, T = 61, 8, 24


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4)
    a = p.parse_args()
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    # float64: sharding changes the order of the gradient sums, and Adam turns float32 rounding of near-zero gradients
    # into parameter differences of ~1e-6; in float64 any real difference stands far above rounding.
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    config = MesaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_attention_heads=2,
        mixer_types=["softmax", "linear", "mesa"],
        mesa_gate="data",
        mesa_lambda_type="diagonal",
        linear_gate=True,
        chunk_size=8,
    )
    model = MesaForCausalLM(config)
    if world > 1:
        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)  # the root group holds the embeddings, tied to the head: one parameter, one group
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)
    losses, embed_grad = [], None
    for step in range(a.steps):
        ids = torch.randint(0, VOCAB, (GLOBAL_BATCH, T), generator=torch.Generator().manual_seed(step))
        local = ids[rank::world]  # equal row counts, so the mean of the ranks' means is the global mean
        logits = model(local).logits  # the loss in float64 too (transformers' loss function upcasts to float32 only)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), local[:, 1:].reshape(-1))
        loss.backward()
        if step == 0:
            embed_grad = full(model.model.embed_tokens.weight.grad).clone()
        optimizer.step()
        optimizer.zero_grad()
        global_loss = loss.detach().clone()
        if world > 1:
            dist.all_reduce(global_loss)
            global_loss /= world
        losses.append(global_loss.item())
    params = {name: full(p.detach()).clone() for name, p in model.named_parameters()}
    if rank == 0:
        torch.save({"losses": losses, "embed_grad": embed_grad, "params": params}, a.out)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
