"""Train a softmax+linear+mesa model for a few steps, sharded with FSDP2 (`fully_shard`) over gloo when launched with
several processes, plain otherwise; write the global loss per step, the tied embedding's first gradient and the final
parameters (full tensors) to `--out`. Run by tests/training/test_fsdp.py under torchrun.

With `--save_at K` it stops after step K with a checkpoint written by `train_lm.py`'s own `save_checkpoint`; with
`--resume CKPT` it continues from one as `train_lm.py` does under Accelerate's FSDP2 engine: load the checkpoint into
the unsharded model and optimizer, shard, switch the optimizer to the sharded parameters, load the optimizer's shards.
`--final_dir` writes the consolidated `from_pretrained` folder. (Accelerate runs FSDP only on GPU-like devices.)"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.distributed.fsdp import fully_shard

from mesa_lm import MesaConfig, MesaForCausalLM
from mesa_lm.training.checkpoints import (
    load_checkpoint,
    load_sharded_optimizer,
    resolve_resume_path,
    save_checkpoint,
    save_final,
)
from mesa_lm.training.sharded_state import full_tensors

VOCAB, GLOBAL_BATCH, T = 61, 8, 24


def shard(model: MesaForCausalLM, optimizer: torch.optim.Optimizer) -> None:
    """`fully_shard` per block, then the root (the embeddings, tied to the head: one parameter, one group); the
    optimizer is pointed at the sharded parameters by name, as Accelerate's FSDP2 preparation does."""
    before = {id(p): name for name, p in model.named_parameters()}
    for block in model.model.layers:
        fully_shard(block)
    fully_shard(model)
    after = dict(model.named_parameters())
    for group in optimizer.param_groups:
        group["params"] = [after[before[id(p)]] for p in group["params"]]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--save_at", type=int, help="stop after this step with a checkpoint in --checkpoint_dir")
    p.add_argument("--checkpoint_dir")
    p.add_argument("--resume", help="a checkpoint folder to continue from")
    p.add_argument("--final_dir", help="write the consolidated model here at the end")
    a = p.parse_args()
    accelerator = Accelerator(cpu=True)  # the gloo process group, ranks and barriers the checkpoint code uses
    world, rank = accelerator.num_processes, accelerator.process_index
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    start = 0
    if a.resume:
        path = resolve_resume_path(a.resume, Path(a.resume).parent)  # the manifest is verified
        start = load_checkpoint(path, model, optimizer, schedule, rank)["step"]
    if world > 1:
        shard(model, optimizer)
        if a.resume:
            load_sharded_optimizer(path, optimizer)
    losses, embed_grad = [], None
    for step in range(start, a.steps):
        ids = torch.randint(0, VOCAB, (GLOBAL_BATCH, T), generator=torch.Generator().manual_seed(step))
        local = ids[rank::world]  # equal row counts, so the mean of the ranks' means is the global mean
        logits = model(local).logits  # the loss in float64 too (transformers' loss function upcasts to float32 only)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), local[:, 1:].reshape(-1))
        loss.backward()
        if step == 0:
            embed_grad = full_tensors(model.model.embed_tokens.weight.grad).clone()
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        losses.append(accelerator.reduce(loss.detach().clone(), "mean").item())
        if a.save_at == step + 1:
            state = {"step": step + 1, "tokens_seen": (step + 1) * GLOBAL_BATCH * T}
            save_checkpoint(accelerator, Path(a.checkpoint_dir), step + 1, state, 2, model, optimizer, schedule)
            break
    params = {name: full_tensors(p.detach()).clone() for name, p in model.named_parameters()}
    if a.final_dir:
        weights = full_tensors(accelerator.get_state_dict(model))  # every process: gathers the shards
        if accelerator.is_main_process:
            save_final(Path(a.final_dir), lambda folder: model.save_pretrained(folder, state_dict=weights))
    if rank == 0:
        torch.save({"losses": losses, "embed_grad": embed_grad, "params": params}, a.out)
    accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
