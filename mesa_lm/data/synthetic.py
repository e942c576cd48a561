"""Synthetic training tasks, generated on the fly and reproducible from (seed, step).

A global batch is a pure function of the seed and the optimizer step, and each process takes its own rows of it.
So runs on 1 or N processes see the same data, and a resumed run continues the stream exactly where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from .dynamics import DYNAMICS, constructed_tokens, haar_orthogonal, sample_dynamics
from .regression import sample_scalar_regression, sample_vector_regression

TASKS = ("dynamics", "fewshot_regression", "scalar_regression")
TOKEN_FORMATS = ("plain", "constructed")


@dataclass
class SyntheticTask:
    """One task of science.md section 2; `sample` returns `inputs`, `targets` and (for prompts) `target_mask`."""

    name: str = "dynamics"
    dynamics: str = "fully_observed"
    tokens: str = "plain"
    state_dim: int = 10
    hidden_dim: int = 15
    seq_len: int = 50
    noise_std: float = 0.01
    num_pairs: int = 25
    input_distribution: str = "uniform"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise ValueError(f"unknown synthetic task {self.name!r}; allowed: {', '.join(TASKS)}")
        if self.dynamics not in DYNAMICS:
            raise ValueError(f"unknown dynamics {self.dynamics!r}; allowed: {', '.join(DYNAMICS)}")
        if self.tokens not in TOKEN_FORMATS:
            raise ValueError(f"unknown token format {self.tokens!r}; allowed: {', '.join(TOKEN_FORMATS)}")
        if self.tokens == "constructed" and self.name != "dynamics":
            raise ValueError("constructed tokens exist for the dynamics task only")
        # The fixed-W control shares one matrix across all sequences, drawn once from the seed.
        self.fixed_w = haar_orthogonal(1, self.state_dim, torch.Generator().manual_seed(self.seed + 7919))[0]

    @property
    def input_dim(self) -> int:
        return 4 * self.state_dim if self.tokens == "constructed" else self.state_dim

    @property
    def output_dim(self) -> int:
        return 1 if self.name == "scalar_regression" else self.state_dim

    @property
    def length(self) -> int:
        """Sequence length of one example."""
        return self.seq_len if self.name == "dynamics" else 2 * self.num_pairs

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.name == "dynamics":
            states = sample_dynamics(
                self.dynamics,
                batch,
                self.seq_len,
                generator,
                state_dim=self.state_dim,
                hidden_dim=self.hidden_dim,
                noise_std=self.noise_std,
                fixed_w=self.fixed_w,
            )
            inputs, targets = states[:, :-1], states[:, 1:]
            if self.tokens == "constructed":
                inputs = constructed_tokens(inputs)
            return {"inputs": inputs, "targets": targets}
        sampler = sample_vector_regression if self.name == "fewshot_regression" else sample_scalar_regression
        tokens, targets, mask = sampler(
            batch, self.num_pairs, self.state_dim, generator, self.input_distribution, self.noise_std
        )
        return {"inputs": tokens, "targets": targets, "target_mask": mask}

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
