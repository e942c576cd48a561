"""The default mesa solve in float32 at any key scale: its error against float64 stays within 2x of the float32 floor.

Inputs as in docs/benchmarks.md (L2-normalised q and k, v ~ N(0, 1); ungated: [P1]'s scalar Lambda; gated: [P3]'s
diagonal Lambda with gamma ~ U(0.9, 1), beta ~ U(0.5, 1)), with k and v scaled by `scale` and Lambda = lam * I.
Error metric: ||o32 - o64||_F / ||o64||_F over the whole output, o64 = the step-by-step reference in float64 on the
same (float32) inputs. Floor: the same reference run in float32, i.e. H_t + Lambda built in float32 and solved by
torch.linalg.solve per position, the error that a float32 solve of the float32 problem cannot avoid.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mesa_lm.ops import mesa_attention, mesa_attention_naive

B, T, H, D, C = 2, 96, 2, 16, 16
EPS = torch.finfo(torch.float32).eps


def bench_inputs(scale: float, lam: float, gated: bool, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, T, H, D, generator=gen), dim=-1)
    k = scale * F.normalize(torch.randn(B, T, H, D, generator=gen), dim=-1)
    v = scale * torch.randn(B, T, H, D, generator=gen)
    x = dict(q=q, k=k, v=v, lam=torch.full((H, D) if gated else (H,), lam))
    if gated:
        x["gamma"] = 0.9 + 0.1 * torch.rand(B, T, H, generator=gen)
        x["beta"] = 0.5 + 0.5 * torch.rand(B, T, H, generator=gen)
    return x


def rel(o: torch.Tensor, ref: torch.Tensor) -> float:
    return ((o.double() - ref).norm() / ref.norm()).item()


def errors(scale: float, lam: float, gated: bool, **kw) -> tuple[float, float]:
    x = bench_inputs(scale, lam, gated)
    ref = mesa_attention_naive(**{n: a.double() for n, a in x.items()})
    floor = rel(mesa_attention_naive(**x), ref)
    return rel(mesa_attention(**x, chunk_size=C, **kw), ref), floor


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize("lam", [1e-3, 1e-2, 1e-1, 1.0, 10.0])
@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0, 1000.0])
def test_default_solve_within_twice_the_float32_floor(scale: float, lam: float, gated: bool):
    err, floor = errors(scale, lam, gated)
    assert err <= 2 * floor + 10 * EPS, f"default path {err:.3g} vs float32 direct solve {floor:.3g}"


@pytest.mark.parametrize("scale,lam", [(1.0, 1e-2), (10.0, 1.0), (100.0, 1.0), (1000.0, 0.1)])
def test_gradients_stay_accurate_for_large_keys(scale: float, lam: float):
    """The backward's solve (dq = (H_t + Lambda)^{-1} G_t^T do_t) takes the same accurate path as the forward."""
    x = bench_inputs(scale, lam, gated=False)
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(B, T, H, D, generator=gen)

    def grads(dtype, fn):
        y = {n: a.detach().to(dtype).clone().requires_grad_() for n, a in x.items()}
        (fn(**y) * do.to(dtype)).sum().backward()
        return y["q"].grad

    ref = grads(torch.float64, mesa_attention_naive)
    floor = rel(grads(torch.float32, mesa_attention_naive), ref)
    err = rel(grads(torch.float32, lambda **y: mesa_attention(**y, chunk_size=C)), ref)
    assert err <= 2 * floor + 10 * EPS, f"dq {err:.3g} vs float32 reference {floor:.3g}"
