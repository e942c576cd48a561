"""The blocked triangular inverse, and the Cholesky-factor inverse (eager and compiled), against LAPACK."""

from __future__ import annotations

import pytest
import torch

import mesa_lm.ops.mesa.native as native
from mesa_lm.ops.mesa.triangular import lower_inverse, lower_triangular_inverse


@pytest.mark.parametrize("use_native", ["0", "1"])
@pytest.mark.parametrize("n", [1, 5, 8, 17, 33, 48, 64, 100])
def test_lower_triangular_inverse(n, use_native, monkeypatch):
    """Both inverses at float64 rounding; `lower_inverse` by torch (MESA_LM_NATIVE=0) and by the compiled kernel
    (sizes across its direct base case of 32 and its blocked recursion, odd splits included)."""
    monkeypatch.setenv(native.ENV_MODE, use_native)
    gen = torch.Generator().manual_seed(n)
    a = torch.randn(3, 2, n, n, generator=gen, dtype=torch.float64)
    m = a @ a.transpose(-1, -2) / n + torch.eye(n, dtype=torch.float64)
    chol = torch.linalg.cholesky(m)
    want = torch.linalg.solve_triangular(chol, torch.eye(n, dtype=torch.float64).expand_as(m), upper=False)
    upper = torch.randn(n, n, generator=gen, dtype=torch.float64).triu(1)
    got = lower_triangular_inverse(chol + upper)  # entries above the diagonal are ignored
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-13
    assert ((lower_inverse(m) - want).abs().max() / want.abs().max()).item() <= 1e-13


@pytest.mark.parametrize("n", [16, 32, 64, 100])
def test_compiled_float32_as_accurate_as_lapack(n, monkeypatch):
    """float32: the compiled Cholesky-factor inverse (computed in double, rounded once) is at least as accurate as
    torch's float32 LAPACK path against float64."""
    gen = torch.Generator().manual_seed(100 + n)
    a = torch.randn(64, n, 2 * n, generator=gen, dtype=torch.float64)
    m = a @ a.transpose(-1, -2) / n + 0.1 * torch.eye(n, dtype=torch.float64)
    want = torch.linalg.inv(torch.linalg.cholesky(m))

    def err(x):
        return ((x.double() - want).abs().amax((-1, -2)) / want.abs().amax((-1, -2))).max().item()

    monkeypatch.setenv(native.ENV_MODE, "1")
    compiled = err(lower_inverse(m.float()))
    monkeypatch.setenv(native.ENV_MODE, "0")
    assert compiled <= err(lower_inverse(m.float()))
    assert compiled <= 2 * torch.finfo(torch.float32).eps  # one rounding of the float64 result, and a little
