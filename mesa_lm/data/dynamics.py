"""Linear dynamical systems of [P1] (science.md section 2), sampled in batches from a torch.Generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DYNAMICS = ("fully_observed", "partially_observed", "nonlinear", "contracting", "fixed_w")


def haar_orthogonal(batch: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """`batch` Haar-random orthogonal matrices (QR of a Gaussian with the signs of R's diagonal fixed)."""
    gaussian = torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]).float()


def contracting_matrices(batch: int, dim: int, generator: torch.Generator, low=0.3, high=0.9) -> torch.Tensor:
    """`Q diag(lambda) Q^T` with Haar `Q` and eigenvalues `lambda ~ U(low, high)`: a contracting system."""
    q = haar_orthogonal(batch, dim, generator)
    eigenvalues = low + (high - low) * torch.rand(batch, dim, generator=generator)
    return q @ torch.diag_embed(eigenvalues) @ q.transpose(-1, -2)


def sample_dynamics(
    kind: str,
    batch: int,
    length: int,
    generator: torch.Generator,
    state_dim: int = 10,
    hidden_dim: int = 15,
    noise_std: float = 0.01,
    clip: float = 10.0,
    fixed_w: torch.Tensor | None = None,
) -> torch.Tensor:
    """Observed sequences (batch, length + 1, d): inputs are `[:, :-1]`, next-step targets `[:, 1:]`.

    `fully_observed`, `contracting` and `fixed_w` evolve `s_{t+1} = W s_t + noise` with `s_1 ~ U(-1, 1)^d`;
    `partially_observed` observes `s_t = C h_t` (`state_dim` of `hidden_dim` dimensions, `C` entries of std 0.5);
    `nonlinear` evolves `h_{t+1} = W f(h_t) / ||f(h_t)|| + noise` with `f(h) = GELU(h A) B`. Values are clipped.
    """
    if kind not in DYNAMICS:
        raise ValueError(f"unknown dynamics {kind!r}; allowed: {', '.join(DYNAMICS)}")
    dim = hidden_dim if kind == "partially_observed" else state_dim
    if kind == "contracting":
        w = contracting_matrices(batch, dim, generator)
    elif kind == "fixed_w":
        if fixed_w is None:
            raise ValueError("dynamics 'fixed_w' needs the shared matrix fixed_w")
        w = fixed_w.expand(batch, dim, dim)
    else:
        w = haar_orthogonal(batch, dim, generator)
    if kind == "nonlinear":
        a = torch.randn(batch, dim, dim, generator=generator) / dim**0.5
        b = torch.randn(batch, dim, dim, generator=generator) / dim**0.5
    h = 2 * torch.rand(batch, dim, generator=generator) - 1
    states = [h]
    for _ in range(length):
        if kind == "nonlinear":
            f = F.gelu(h[:, None, :] @ a) @ b
            f = f[:, 0] / f[:, 0].norm(dim=-1, keepdim=True).clamp(min=1e-12)
            h = (w @ f[..., None])[..., 0]
        else:
            h = (w @ h[..., None])[..., 0]
        h = (h + noise_std * torch.randn(batch, dim, generator=generator)).clamp(-clip, clip)
        states.append(h)
    sequence = torch.stack(states, dim=1)
    if kind == "partially_observed":
        c = 0.5 * torch.randn(batch, dim, state_dim, generator=generator)
        sequence = (sequence @ c).clamp(-clip, clip)
    return sequence


def constructed_tokens(states: torch.Tensor) -> torch.Tensor:
    """[P1]'s tokens for linear-attention-only models: `e_t = (0, s_t, s_t, s_{t-1})` with `s_0 = 0`, width 4d."""
    previous = F.pad(states, (0, 0, 1, 0))[:, :-1]
    return torch.cat([torch.zeros_like(states), states, states, previous], dim=-1)
