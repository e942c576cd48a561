"""What the training loop reads: global batches as a pure function of the step, split over processes."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from ..data.synthetic import SyntheticTask, process_rows


class SyntheticData:
    """Batches of a synthetic task for `MesaForCausalRegression` (`inputs`, `targets`, maybe `target_mask`)."""

    def __init__(self, task: SyntheticTask, eval_batches: int, eval_batch_size: int):
        self.task = task
        self.eval_batches = eval_batches
        self.eval_batch_size = eval_batch_size

    @property
    def sequence_length(self) -> int:
        return self.task.length

    def train_batch(self, step: int, micro: int, micro_batches: int, rank: int, world: int, per_device: int) -> dict:
        """Rows of process `rank` in micro-batch `micro` of step `step` (the same data for any number of processes)."""
        size = micro_batches * world * per_device
        batch = self.task.global_batch(step, size)
        micro_rows = {k: v[micro * world * per_device : (micro + 1) * world * per_device] for k, v in batch.items()}
        return process_rows(micro_rows, rank, world)

    def eval_data(self, rank: int, world: int) -> Iterator[dict]:
        """This process's share (every `world`-th row) of the fixed held-out set, the same for any world size."""
        for i in range(self.eval_batches):
            batch = self.task.global_batch(i, self.eval_batch_size, stream=1)
            yield {key: value[rank::world] for key, value in batch.items()}

    @staticmethod
    def per_position_loss(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums (T,) of `1/2 ||prediction - target||^2` over the batch at each position, and the counts."""
        predictions = model(inputs=batch["inputs"]).predictions.float()
        losses = 0.5 * (predictions - batch["targets"].float()).pow(2).sum(-1)
        mask = batch.get("target_mask")
        weights = torch.ones_like(losses) if mask is None else mask.to(losses.dtype)
        return (losses * weights).sum(0), weights.sum(0)

    def tokens_in(self, batch: dict) -> int:
        return batch["inputs"].shape[0] * batch["inputs"].shape[1]


class TokenTaskData(SyntheticData):
    """Batches of a synthetic task on token ids for `MesaForCausalLM` (`input_ids`, `labels` with -100 where
    nothing is scored, e.g. the recall tasks)."""

    @staticmethod
    def per_position_loss(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums (T - 1,) of next-token cross-entropy over the batch at the scored positions, and their counts."""
        logits = model(input_ids=batch["input_ids"]).logits.float()
        targets = batch["labels"][:, 1:]
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none", ignore_index=-100)
        scored = (targets != -100).to(losses.dtype)
        return (losses * scored).sum(0), scored.sum(0)

    def tokens_in(self, batch: dict) -> int:
        return batch["input_ids"].numel()


class TextData:
    """Blocks of token ids for `MesaForCausalLM`, visited in a seeded random order, epoch after epoch."""

    def __init__(self, train_blocks: torch.Tensor, validation_blocks: torch.Tensor, seed: int, max_eval_blocks: int,
                 eval_batch_size: int):
        self.train_blocks = train_blocks
        self.validation_blocks = validation_blocks[:max_eval_blocks]
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self._orders: dict[int, torch.Tensor] = {}

    @property
    def sequence_length(self) -> int:
        return self.train_blocks.shape[1]

    def _order(self, epoch: int) -> torch.Tensor:
        """The visiting order of epoch `epoch` (the last two are kept; a batch spans at most two epochs)."""
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(hash((self.seed, epoch)) % (2**63))
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = torch.randperm(len(self.train_blocks), generator=generator)
        return self._orders[epoch]

    def train_batch(self, step: int, micro: int, micro_batches: int, rank: int, world: int, per_device: int) -> dict:
        n = len(self.train_blocks)
        size = world * per_device
        first = (step * micro_batches + micro) * size + rank * per_device
        indices = torch.arange(first, first + per_device)
        epochs = indices // n
        rows = torch.stack([self._order(int(e))[int(i % n)] for e, i in zip(epochs, indices)])
        ids = self.train_blocks[rows]
        return {"input_ids": ids, "labels": ids}

    def eval_data(self, rank: int, world: int) -> Iterator[dict]:
        mine = self.validation_blocks[rank::world]
        for start in range(0, len(mine), self.eval_batch_size):
            ids = mine[start : start + self.eval_batch_size]
            yield {"input_ids": ids, "labels": ids}

    @staticmethod
    def per_position_loss(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums (T - 1,) of next-token cross-entropy at each position over the batch, and the counts."""
        logits = model(input_ids=batch["input_ids"]).logits.float()
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")
        return losses.sum(0), torch.full_like(losses[0], losses.shape[0])

    def tokens_in(self, batch: dict) -> int:
        return batch["input_ids"].numel()
