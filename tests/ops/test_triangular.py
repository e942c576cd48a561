"""The blocked triangular inverse against LAPACK's triangular solve."""

from __future__ import annotations

import pytest
import torch

from mesa_lm.ops.mesa.triangular import lower_inverse, lower_triangular_inverse


@pytest.mark.parametrize("n", [1, 5, 8, 17, 48, 64])
def test_lower_triangular_inverse(n):
    gen = torch.Generator().manual_seed(n)
    a = torch.randn(3, 2, n, n, generator=gen, dtype=torch.float64)
    m = a @ a.transpose(-1, -2) / n + torch.eye(n, dtype=torch.float64)
    chol = torch.linalg.cholesky(m)
    want = torch.linalg.solve_triangular(chol, torch.eye(n, dtype=torch.float64).expand_as(m), upper=False)
    got = lower_triangular_inverse(chol + torch.randn(n, n, generator=gen, dtype=torch.float64).triu(1))  # upper ignored
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-13
    assert ((lower_inverse(m) - want).abs().max() / want.abs().max()).item() <= 1e-13
