"""Each sequence-mixing op against its float64 reference on one device: outputs and gradients of every input.

Used by `gpu_check.py`. The op runs in float32, or on bfloat16 inputs under bf16 autocast (as the model calls it);
the reference runs in float64 on the same device, on the op's own (rounded) inputs, so an error measures the op's
arithmetic and not the rounding of its inputs. References: explicit masked softmax for SDPA, and the plain loops
over t (`linear_attention_naive`, `mesa_attention_naive`) for the others.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import op_call, op_inputs  # noqa: E402

from mesa_lm.ops import linear_attention_naive, mesa_attention, mesa_attention_naive  # noqa: E402

# The ops checked, by their row names in run.py's ops table (the sequential reference is itself a reference), and the
# gated layer's default method (what MesaLayer calls), whichever path that is in this checkout.
GATED_DEFAULT = "mesa gated default (method='auto')"
CHECKED_OPS = [
    "softmax (SDPA)",
    "linear chunked",
    "linear gated chunked",
    "mesa chunked",
    "mesa gated chunked (cholesky)",
    "mesa gated chunked (cg)",
    GATED_DEFAULT,
]


def inputs(name: str, B: int, T: int, H: int, D: int, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """run.py's inputs of the op `name` (L2-normalised q and k, gates near [P3]'s initialisation)."""
    kind = "mesa gated chunked (cholesky)" if name == GATED_DEFAULT else name
    return op_inputs(kind, B, T, H, D, dtype, device, seed)


def call(name: str, args: dict, chunk: int) -> torch.Tensor:
    if name == GATED_DEFAULT:
        return mesa_attention(**args, chunk_size=chunk)
    return op_call(name, args, chunk)

# Largest relative Frobenius error allowed, (output, gradients), per precision. float32: the test suite's limits
# (tests/ops: 1e-4 for outputs, 1e-3 for gradients); CG solves to relative residual 1e-5, inside them.
# bfloat16: outputs and the gradients of bf16 inputs are rounded to bf16 (relative step 2^-8 = 3.9e-3; measured on
# CPU: 1.6e-3 and 2-3e-3 for every op); states or solves in bf16 would exceed the limits.
LIMITS = {"float32": (1e-4, 1e-3), "bfloat16": (1e-2, 3e-2)}


def softmax_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention, (B, T, H, D) layout, scale 1/sqrt(D), written out (no fused kernel)."""
    T, D = q.shape[1], q.shape[-1]
    scores = torch.einsum("bthd,bshd->bhts", q, k) / D**0.5
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    return torch.einsum("bhts,bshd->bthd", weights, v)


def reference(kind: str, args: dict) -> torch.Tensor:
    if kind == "softmax (SDPA)":
        return softmax_reference(args["q"], args["k"], args["v"])
    if kind.startswith("linear"):
        return linear_attention_naive(**args)
    return mesa_attention_naive(**args)


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().double(), ref.detach()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-300))


def check_op(kind: str, precision: str, shape: tuple[int, int, int, int], chunk: int, device: torch.device) -> dict:
    """Relative errors of the op's output and of the gradient of each input, against float64, with the verdict.

    shape = (B, T, H, D). The loss is <o, w> for a fixed random w, so that every gradient is a generic one."""
    B, T, H, D = shape
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    base = inputs(kind, B, T, H, D, torch.float64, device, seed=3)
    # The op's inputs: q, k, v (and the gates) in its precision; Lambda stays float32 (a parameter under autocast).
    mine = {n: t.to(torch.float32 if n == "lam" else dtype).detach().requires_grad_() for n, t in base.items()}
    ref_in = {n: t.detach().double().requires_grad_() for n, t in mine.items()}
    w = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = call(kind, mine, chunk)
    (out.double() * w).sum().backward()
    ref = reference(kind, ref_in)
    (ref * w).sum().backward()
    out_limit, grad_limit = LIMITS[precision]
    row = {"op": kind, "precision": precision, "shape": list(shape), "chunk_size": chunk}
    row["output_error"] = relative_error(out, ref)
    row["finite"] = bool(torch.isfinite(out).all()) and all(bool(torch.isfinite(t.grad).all()) for t in mine.values())
    row["gradient_errors"] = {n: relative_error(mine[n].grad, ref_in[n].grad) for n in mine}
    worst = max(row["gradient_errors"], key=row["gradient_errors"].get)
    row["worst_gradient"] = worst
    row["limits"] = [out_limit, grad_limit]
    row["ok"] = row["finite"] and row["output_error"] <= out_limit and row["gradient_errors"][worst] <= grad_limit
    return row


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| op | precision | output error | worst gradient error (input) | limits (output, gradients) | verdict |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        worst = r["worst_gradient"]
        lines.append(
            f"| {r['op']} | {r['precision']} | {r['output_error']:.1e} | {r['gradient_errors'][worst]:.1e} ({worst}) "
            f"| {r['limits'][0]:.0e}, {r['limits'][1]:.0e} | {'pass' if r['ok'] else '**FAIL**'} |"
        )
    return "\n".join(lines)
