"""Linearisation ([P1]): distil a softmax layer into a linear-attention layer and measure the loss change."""

from __future__ import annotations

import copy
from typing import Callable, Iterator

import torch

from ..layers.linear_attention import LinearAttention
from .weights import mixer_of


def _mixer_io(model, layer: int, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The input and output of layer `layer`'s mixer on `batch` (captured with a forward hook)."""
    captured = {}

    def hook(module, args, output):
        captured["input"], captured["output"] = args[0].detach(), output[0].detach()

    handle = mixer_of(model, layer).register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        handle.remove()
    return captured["input"], captured["output"]


def distil_linear_layer(model, layer: int, batches: Iterator[dict], steps: int = 500, lr: float = 1e-3,
                        progress: Callable[[int, float], None] | None = None) -> LinearAttention:
    """A LinearAttention layer trained (Adam, MSE) to reproduce softmax layer `layer`'s outputs on its own inputs."""
    student = LinearAttention(model.config, layer).to(next(model.parameters()).device)
    teacher = mixer_of(model, layer)
    with torch.no_grad():  # start from the teacher's projections: the same roles, only the mixing differs
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            getattr(student, name).load_state_dict(getattr(teacher, name).state_dict())
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    for step in range(steps):
        hidden, target = _mixer_io(model, layer, next(batches))
        positions = torch.arange(hidden.shape[1]).expand(hidden.shape[0], -1)
        loss = (student(hidden, None, positions)[0] - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step, loss.item())
    return student.eval()


@torch.no_grad()
def mean_loss(model, batches: list[dict]) -> float:
    return sum(model(**b).loss.item() for b in batches) / len(batches)


def linearise(model, layer: int, train_batches: Iterator[dict], eval_batches: list[dict], steps: int = 500,
              lr: float = 1e-3) -> dict:
    """Replace softmax layer `layer` by a distilled linear layer; return the loss before and after, and the model."""
    if model.config.mixer_types[layer] != "softmax":
        raise ValueError(f"layer {layer} is a {model.config.mixer_types[layer]} layer; only softmax layers are linearised")
    before = mean_loss(model, eval_batches)
    student = distil_linear_layer(model, layer, train_batches, steps, lr)
    linearised = copy.deepcopy(model)
    linearised.config.mixer_types[layer] = "linear"
    getattr(linearised, "model", linearised).layers[layer].mixer = student
    after = mean_loss(linearised, eval_batches)
    return {"layer": layer, "loss_before": before, "loss_after": after, "loss_change": after - before,
            "model": linearised}
