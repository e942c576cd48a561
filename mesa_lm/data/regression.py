"""Few-shot in-context regression prompts: [P1]'s `y = W x` and Garg et al.'s scalar `y = w . x`."""

from __future__ import annotations

import torch

from .dynamics import haar_orthogonal


def sample_inputs(batch: int, pairs: int, dim: int, distribution: str, generator: torch.Generator) -> torch.Tensor:
    if distribution == "normal":
        return torch.randn(batch, pairs, dim, generator=generator)
    if distribution == "uniform":
        return 2 * torch.rand(batch, pairs, dim, generator=generator) - 1
    raise ValueError(f"unknown input distribution {distribution!r}; allowed: normal, uniform")


def interleave(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`[x_1, y_1, x_2, y_2, ...]` from x, y (B, N, d): (B, 2N, d)."""
    return torch.stack([x, y], dim=2).flatten(1, 2)


def sample_vector_regression(
    batch: int, pairs: int, dim: int, generator: torch.Generator, distribution: str = "uniform", noise_std: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[P1]'s prompts with `y = W x` (Haar `W`). Returns tokens (B, 2N, d), targets (B, 2N, d), target mask (B, 2N).

    At the position of `x_i` the target is `y_i` (marked in the mask); elsewhere it is the next token, unmarked.
    """
    x = sample_inputs(batch, pairs, dim, distribution, generator)
    w = haar_orthogonal(batch, dim, generator)
    y = x @ w.transpose(-1, -2) + noise_std * torch.randn(batch, pairs, dim, generator=generator)
    tokens = interleave(x, y)
    targets = torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1)
    mask = torch.zeros(batch, 2 * pairs, dtype=torch.bool)
    mask[:, 0::2] = True
    return tokens, targets, mask


def sample_scalar_regression(
    batch: int, pairs: int, dim: int, generator: torch.Generator, distribution: str = "normal", noise_std: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Garg et al. (2022): `y = w . x`, `w ~ N(0, I)`; `y` enters as the token `(y, 0, ..., 0)`.

    Returns tokens (B, 2N, d), targets (B, 2N, 1) holding `y_i` at the position of `x_i`, and that mask (B, 2N).
    """
    x = sample_inputs(batch, pairs, dim, distribution, generator)
    w = torch.randn(batch, dim, 1, generator=generator)
    y = x @ w + noise_std * torch.randn(batch, pairs, 1, generator=generator)
    tokens = interleave(x, torch.cat([y, torch.zeros(batch, pairs, dim - 1)], dim=-1))
    targets = torch.zeros(batch, 2 * pairs, 1)
    targets[:, 0::2] = y
    mask = torch.zeros(batch, 2 * pairs, dtype=torch.bool)
    mask[:, 0::2] = True
    return tokens, targets, mask
