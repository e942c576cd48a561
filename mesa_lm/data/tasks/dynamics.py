"""[P1]'s next-state prediction on (linear) dynamical systems (science.md section 2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..dynamics import DYNAMICS, constructed_tokens, haar_orthogonal, sample_dynamics
from ..synthetic import SyntheticTask
from . import register_task
from .base import at_least, finite_nonnegative, option

TOKEN_FORMATS = ("plain", "constructed")


@register_task
@dataclass
class DynamicsTask(SyntheticTask):
    """Sequences `s_1 .. s_T` of a random system; the target at t is `s_{t+1}`."""

    name = "dynamics"
    description = "next-state prediction on random dynamical systems ([P1])"

    dynamics: str = option("fully_observed", "system: " + ", ".join(DYNAMICS), choices=DYNAMICS)
    tokens: str = option("plain", "'plain' states or [P1]'s 'constructed' tokens (0, s_t, s_t, s_{t-1})",
                         choices=TOKEN_FORMATS)
    state_dim: int = option(10, "dimension d of the observed states", check=at_least(1))
    hidden_dim: int = option(15, "hidden state dimension of partially observed dynamics", check=at_least(1))
    seq_len: int = option(50, "sequence length T", check=(lambda v: v >= 2, "an integer >= 2 (a state and its successor)"))
    noise_std: float = option(0.01, "process noise std", check=finite_nonnegative())

    def __post_init__(self) -> None:
        super().__post_init__()
        # The fixed-W control shares one matrix across all sequences, drawn once from the seed.
        self.fixed_w = haar_orthogonal(1, self.state_dim, torch.Generator().manual_seed(self.seed + 7919))[0]

    @property
    def input_dim(self) -> int:
        return 4 * self.state_dim if self.tokens == "constructed" else self.state_dim

    @property
    def output_dim(self) -> int:
        return self.state_dim

    @property
    def length(self) -> int:
        return self.seq_len

    @property
    def length_option(self) -> str:
        return f"seq_len={self.seq_len}"

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        states = sample_dynamics(self.dynamics, batch, self.seq_len, generator, state_dim=self.state_dim,
                                 hidden_dim=self.hidden_dim, noise_std=self.noise_std, fixed_w=self.fixed_w)
        inputs, targets = states[:, :-1], states[:, 1:]
        if self.tokens == "constructed":
            inputs = constructed_tokens(inputs)
        return {"inputs": inputs, "targets": targets}
