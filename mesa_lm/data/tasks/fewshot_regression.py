"""[P1]'s few-shot regression prompts `[x_1, y_1, x_2, y_2, ...]` with `y = W x`, `W` Haar-orthogonal."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..regression import sample_vector_regression
from ..synthetic import SyntheticTask
from . import register_task
from .base import at_least, finite_nonnegative, option

INPUT_DISTRIBUTIONS = ("uniform", "normal")


@register_task
@dataclass
class FewShotRegressionTask(SyntheticTask):
    """The loss counts at the positions of the `x_i`, where the target is `y_i`."""

    name = "fewshot_regression"
    description = "few-shot vector regression y = W x ([P1])"

    state_dim: int = option(10, "dimension d of the inputs x (and labels y)", check=at_least(1))
    num_pairs: int = option(25, "(x, y) pairs per prompt", check=at_least(1))
    noise_std: float = option(0.01, "label noise std", check=finite_nonnegative())
    input_distribution: str = option("uniform", "inputs x ~ 'uniform' U(-1, 1) or 'normal' N(0, I)",
                                     choices=INPUT_DISTRIBUTIONS)
    tokens: str = option("plain", "'plain' only: constructed tokens exist for the dynamics task only",
                         choices=("plain",))

    sampler = staticmethod(sample_vector_regression)

    @property
    def input_dim(self) -> int:
        return self.state_dim

    @property
    def output_dim(self) -> int:
        return self.state_dim

    @property
    def length(self) -> int:
        return 2 * self.num_pairs

    @property
    def length_option(self) -> str:
        return f"num_pairs={self.num_pairs} (prompts of {self.length} positions)"

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        tokens, targets, mask = self.sampler(batch, self.num_pairs, self.state_dim, generator,
                                             self.input_distribution, self.noise_std)
        return {"inputs": tokens, "targets": targets, "target_mask": mask}
