"""Input checks shared by the attention ops; each failure is a one-line ValueError naming the argument."""

from __future__ import annotations

from typing import Any

import torch

Tensor = torch.Tensor


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def check_tensor(fn: str, name: str, x: Any, device: torch.device | None = None) -> None:
    """x must be a floating-point tensor (on `device` when given)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{fn}: {name} has dtype {x.dtype}; expected a floating dtype (float16, bfloat16, float32, float64)"
        )
    if device is not None and x.device != device:
        raise ValueError(f"{fn}: {name} is on {x.device} but q is on {device}; all inputs must be on one device")


def check_qkv(fn: str, q: Tensor, k: Tensor, v: Tensor, same_length: bool = True) -> tuple[int, int, int, int, int]:
    """q, k: (B, T, H, D), v: (B, T, H, Dv), one dtype and device; returns (B, T, H, D, Dv).

    With same_length=False (softmax with a KV cache) k and v may have their own length Tk.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(fn, name, x)
        if x.ndim != 4:
            raise ValueError(f"{fn}: {name} has shape {_shape(x)} ({x.ndim}-D); expected 4-D (B, T, H, D)")
    for name, x in (("k", k), ("v", v)):
        if x.dtype != q.dtype:
            raise ValueError(f"{fn}: {name} has dtype {x.dtype} but q has {q.dtype}; q, k and v must share one dtype")
        if x.device != q.device:
            raise ValueError(f"{fn}: {name} is on {x.device} but q is on {q.device}; all inputs must be on one device")
    B, T, H, D = q.shape
    if same_length:
        if k.shape != q.shape:
            raise ValueError(f"{fn}: k has shape {_shape(k)} but q has {_shape(q)}; k must match q in (B, T, H, D)")
        if v.shape[:3] != q.shape[:3]:
            raise ValueError(f"{fn}: v has shape {_shape(v)} but q has {_shape(q)}; v must match q in (B, T, H)")
    else:
        if (k.shape[0], k.shape[2], k.shape[3]) != (B, H, D):
            raise ValueError(f"{fn}: k has shape {_shape(k)} but q has {_shape(q)}; k must match q in (B, H, D)")
        if v.shape[:3] != k.shape[:3]:
            raise ValueError(f"{fn}: v has shape {_shape(v)} but k has {_shape(k)}; v must match k in (B, T, H)")
    if T == 0:
        raise ValueError(f"{fn}: q has shape {_shape(q)} with T = 0; need at least one time step")
    return B, T, H, D, v.shape[-1]


def check_gate(fn: str, name: str, g: Tensor | None, B: int, T: int, H: int, device: torch.device) -> None:
    """Optional per-token gate of shape (B, T, H)."""
    if g is None:
        return
    check_tensor(fn, name, g, device)
    if g.shape != (B, T, H):
        raise ValueError(f"{fn}: {name} has shape {_shape(g)}; expected (B, T, H) = {(B, T, H)} or None")


def check_lam(fn: str, lam: Tensor, H: int, D: int, device: torch.device) -> None:
    """Regulariser lam: (H,) (scalar per head) or (H, D) (diagonal per head), strictly positive."""
    check_tensor(fn, "lam", lam, device)
    if lam.shape != (H,) and lam.shape != (H, D):
        raise ValueError(f"{fn}: lam has shape {_shape(lam)}; expected (H,) = {(H,)} or (H, D) = {(H, D)}")
    # The positivity check reads the values back: only where that costs no device sync, and not inside a compiled
    # graph (a data-dependent branch would break it; the layers produce a positive lam by construction).
    if lam.device.type == "cpu" and not torch.compiler.is_compiling() and bool((lam <= 0).any()):
        raise ValueError(f"{fn}: lam has min value {lam.min().item():.3g}; every entry must be > 0")


def check_state(fn: str, name: str, s: Any, layout: str, shape: tuple[int, ...], device: torch.device) -> None:
    """A state tensor of an exact shape (any floating dtype: it is cast to the compute dtype)."""
    check_tensor(fn, name, s, device)
    if s.shape != shape:
        raise ValueError(f"{fn}: {name} has shape {_shape(s)}; expected {layout} = {shape}")


def check_chunk_size(fn: str, chunk_size: Any) -> None:
    """chunk_size must be a positive int."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{fn}: chunk_size is {chunk_size!r}; expected an int >= 1")


def check_mesa_inputs(
    fn: str,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    initial_state: Any,
) -> tuple[int, int, int, int, int]:
    """All checks of the mesa ops; returns (B, T, H, D, Dv)."""
    B, T, H, D, Dv = check_qkv(fn, q, k, v)
    if 0 in (B, H, D):
        raise ValueError(f"{fn}: q has shape {_shape(q)}; B, H and D must all be at least 1 (a D x D solve per head)")
    check_lam(fn, lam, H, D, q.device)
    check_gate(fn, "gamma", gamma, B, T, H, q.device)
    check_gate(fn, "beta", beta, B, T, H, q.device)
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
            raise ValueError(
                f"{fn}: initial_state is {type(initial_state).__name__}; expected None or a pair (H0, G0)"
            )
        check_state(fn, "initial_state[0] (H0)", initial_state[0], "(B, H, D, D)", (B, H, D, D), q.device)
        check_state(fn, "initial_state[1] (G0)", initial_state[1], "(B, H, Dv, D)", (B, H, Dv, D), q.device)
    return B, T, H, D, Dv


def check_linear_inputs(
    fn: str, q: Tensor, k: Tensor, v: Tensor, gamma: Tensor | None, initial_state: Any
) -> tuple[int, int, int, int, int]:
    """All checks of the linear-attention ops; returns (B, T, H, D, Dv)."""
    B, T, H, D, Dv = check_qkv(fn, q, k, v)
    check_gate(fn, "gamma", gamma, B, T, H, q.device)
    if initial_state is not None:
        check_state(fn, "initial_state", initial_state, "(B, H, Dv, D)", (B, H, Dv, D), q.device)
    return B, T, H, D, Dv


def check_single_step(fn: str, T: int) -> None:
    """The decoding-step ops take exactly one token."""
    if T != 1:
        raise ValueError(f"{fn}: q has T = {T} time steps; a decoding step takes exactly 1 (use the chunked op)")
