"""Feature maps applied to linear-attention queries and keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpfp(x: torch.Tensor, nu: int = 3) -> torch.Tensor:
    """Deterministic parameter-free projection (Schlag et al. 2021): D -> 2 D nu, non-negative.

    With `r = [relu(x), relu(-x)]`, the features are `r * roll(r, i)` for `i = 1..nu`, concatenated.
    """
    r = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
    return torch.cat([r * torch.roll(r, shifts=i, dims=-1) for i in range(1, nu + 1)], dim=-1)


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """`ELU(x) + 1` (Katharopoulos et al. 2020): positive features of the same size."""
    return F.elu(x) + 1.0


def feature_dim(feature_map: str, head_dim: int, nu: int) -> int:
    """The size of the features of a `head_dim`-sized query or key."""
    return 2 * head_dim * nu if feature_map == "dpfp" else head_dim


def apply_feature_map(x: torch.Tensor, feature_map: str, nu: int) -> torch.Tensor:
    if feature_map == "dpfp":
        return dpfp(x, nu)
    if feature_map == "elu+1":
        return elu_plus_one(x)
    return x
