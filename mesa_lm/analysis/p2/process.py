"""[P2]'s complex autoregressive process and its tokens.

    x_{t+1} = W x_t,   W = diag(exp(i theta_1), ..., exp(i theta_d)),   theta_j ~ U[0, 2 pi) fresh per sequence,

so `x_t = W^{t-1} x_1` in closed form. The initial token `x_1` is real and drawn from one of three starts:
Gaussian `N(0, sigma^2 I)`, sparse `+-c e_j` (j uniform, sign uniform) or all ones (scaled by `scale`).
Tokens are `e_t = (x_t ; x_{t-1})` in C^{2d} with `x_0 = 0`. Everything is complex128.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor

KINDS = ("gaussian", "sparse", "ones")


@dataclass(frozen=True)
class Start:
    """Distribution of the real initial token `x_1`: `kind` in KINDS, `scale` = sigma, c, or the all-ones value."""

    kind: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown start {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    @property
    def name(self) -> str:
        return self.kind if self.kind == "ones" and self.scale == 1.0 else f"{self.kind}-{self.scale:g}"

    def sample(self, m: int, d: int, generator: torch.Generator) -> Tensor:
        """`m` initial tokens, real float64 (m, d)."""
        if self.kind == "gaussian":
            return self.scale * torch.randn(m, d, generator=generator, dtype=torch.float64)
        if self.kind == "sparse":
            j = torch.randint(d, (m,), generator=generator)
            sign = 2.0 * torch.randint(2, (m,), generator=generator, dtype=torch.float64) - 1.0
            x1 = torch.zeros(m, d, dtype=torch.float64)
            x1[torch.arange(m), j] = self.scale * sign
            return x1
        return torch.full((m, d), self.scale, dtype=torch.float64)


def sample_sequences(start: Start, m: int, length: int, d: int, generator: torch.Generator) -> Tensor:
    """`m` sequences `x_1 .. x_length`, complex128 (m, length, d): `x_t = exp(i (t-1) theta) * x_1` per coordinate."""
    x1 = start.sample(m, d, generator)
    theta = 2 * torch.pi * torch.rand(m, 1, d, generator=generator, dtype=torch.float64)
    powers = torch.arange(length, dtype=torch.float64).view(1, -1, 1)
    return x1.unsqueeze(1) * torch.exp(1j * powers * theta)


def tokens(x: Tensor) -> Tensor:
    """`e_t = (x_t ; x_{t-1})`, `x_0 = 0`: (m, n, d) -> (m, n, 2d)."""
    previous = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
    return torch.cat([x, previous], dim=-1)
