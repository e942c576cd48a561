"""Synthetic training tasks, generated on the fly and reproducible from (seed, step).

A global batch is a pure function of the seed and the optimizer step, and each process takes its own rows of it.
So runs on 1 or N processes see the same data, and a resumed run continues the stream exactly where it stopped.
The tasks themselves (dynamics, few-shot regression, ...) are in `mesa_lm.data.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from .tasks.base import Task


@dataclass
class SyntheticTask(Task):
    """A task for `MesaForCausalRegression`: `sample` returns `inputs` (B, T, input_dim), `targets` (B, T,
    output_dim) and, for prompts, a `target_mask` (B, T) of the positions whose loss counts."""

    model = "regression"
    seed: int = 0

    @property
    def input_dim(self) -> int:
        raise NotImplementedError

    @property
    def output_dim(self) -> int:
        raise NotImplementedError

    @property
    def length(self) -> int:
        """Sequence length of one example."""
        raise NotImplementedError

    @property
    def length_option(self) -> str:
        """The option that sets `length`, as `name=value`, for error messages."""
        raise NotImplementedError

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def global_batch(self, step: int, size: int, stream: int = 0) -> dict[str, torch.Tensor]:
        """The batch of optimizer step `step` (all processes' rows); `stream` 1 is the held-out evaluation data."""
        generator = torch.Generator().manual_seed(hash((self.seed, stream, step)) % (2**63))
        return self.sample(size, generator)

    def examples(self, stream: int = 0, batch: int = 64) -> Iterator[dict[str, torch.Tensor]]:
        """An endless stream of single examples, e.g. for `datasets.IterableDataset.from_generator`."""
        step = 0
        while True:
            data = self.global_batch(step, batch, stream)
            for i in range(batch):
                yield {key: value[i] for key, value in data.items()}
            step += 1


def process_rows(batch: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """The rows of a global batch that belong to process `rank` of `world_size`."""
    size = next(iter(batch.values())).shape[0]
    if size % world_size:
        raise ValueError(f"global batch of {size} rows cannot be split evenly over {world_size} processes")
    per = size // world_size
    return {key: value[rank * per : (rank + 1) * per] for key, value in batch.items()}
