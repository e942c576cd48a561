"""Throughput: model FLOPs per token, peak FLOP/s per accelerator, tokens/s and model FLOPs utilisation (MFU).

Model FLOPs per trained token (forward + backward, a multiply-add counted as 2 FLOPs, backward = 2x forward):

    6 * N_matmul  +  sum over layers of the mixer's sequence term

- `N_matmul`: the weights of every `nn.Linear` (projections, gate projections, MLPs, read-in/out, the LM head, once
  even when tied to the embedding). Embedding lookups, norms, biases, short convolutions and RoPE are not counted.
- softmax, per layer: `6 * T * H * (d_qk + d_v)`: QK^T and AV over the full length T, as PaLM (Chowdhery et al. 2022,
  appendix B) and nanoGPT count it (no causal halving; with d_qk = d_v = d/H it is the familiar `12 * T * d`).
  `d_qk` includes [P1]'s concatenated position channels.
- linear, per layer: `12 * H * f * d_v`: per token the state update k v^T and the read-out q^T S (f = the feature
  size: `head_dim`, or `2 * nu * head_dim` with DPFP). Independent of T.
- mesa, per layer: `6 * H * (2 d^2 + 2 d d_v + d^3 / 3)`: per token the updates of R (k k^T) and S (v k^T), one
  d x d Cholesky factorisation (d^3 / 3 multiply-adds) and its two triangular solves (d^2), and the read-out S x
  (d = `head_dim`). This counts the recurrence the layer defines, whatever solver computes it (the chunked Woodbury
  solve does other, often fewer, operations), so MFU compares models, not kernels.

MFU = (FLOPs per token * tokens/s of one process) / peak FLOP/s of one device. Peak figures are the vendors' dense
(no sparsity) numbers, looked up by CUDA device name; an unknown device has no MFU unless `--peak_tflops` says it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers.linear_attention import LinearAttention
from ..layers.mesa_layer import MesaLayer
from ..layers.softmax_attention import SoftmaxAttention

# Dense peak FLOP/s per device: (bf16/fp16 tensor cores, tf32 tensor cores, plain fp32), from the vendors' data
# sheets (SXM parts where a family has several). Matched as substrings of torch.cuda.get_device_name(), in order.
PEAK_FLOPS: dict[str, tuple[float, float, float]] = {
    "H200": (989e12, 494.5e12, 66.9e12),
    "H100 PCIe": (756e12, 378e12, 51.2e12),
    "H100 NVL": (835e12, 417.5e12, 60.0e12),
    "H100": (989e12, 494.5e12, 66.9e12),
    "GH200": (989e12, 494.5e12, 66.9e12),
    "A100": (312e12, 156e12, 19.5e12),
    "L40S": (362e12, 183e12, 91.6e12),
    "L4": (121e12, 60e12, 30.3e12),
    "A10G": (70e12, 35e12, 31.2e12),
    "A10": (125e12, 62.5e12, 31.2e12),
}


def model_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token of `model` on sequences of `seq_len` tokens (formula in the module docstring)."""
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return 6.0 * matmul + sum(mixer_flops_per_token(block.mixer, seq_len) for block in _blocks(model))


def mixer_flops_per_token(mixer: nn.Module, seq_len: int) -> float:
    """The sequence term of one token mixer, forward + backward, per token."""
    heads, dv = mixer.num_heads, mixer.value_head_dim
    if isinstance(mixer, SoftmaxAttention):
        extra = mixer.concat_positions.embedding_dim if mixer.concat_positions is not None else 0
        return 6.0 * seq_len * heads * (mixer.head_dim + extra + dv)
    if isinstance(mixer, LinearAttention):
        return 12.0 * heads * mixer.feature_dim * dv
    if isinstance(mixer, MesaLayer):
        d = mixer.head_dim
        return 6.0 * heads * (2 * d * d + 2 * d * dv + d**3 / 3)
    raise ValueError(f"no FLOPs formula for mixer {type(mixer).__name__!r}; known: softmax, linear, mesa")


def _blocks(model: nn.Module) -> list[nn.Module]:
    from ..models.mesa.modeling_mesa import MesaBlock

    return [m for m in model.modules() if isinstance(m, MesaBlock)]


def peak_flops(mixed_precision: str, peak_tflops: float | None = None) -> float | None:
    """Peak FLOP/s of one device: `peak_tflops` if given, else the table's figure for this CUDA device (see
    `table_peak_flops`); None on CPU or an unknown device."""
    if peak_tflops is not None:
        return peak_tflops * 1e12
    if not torch.cuda.is_available():
        return None
    return table_peak_flops(torch.cuda.get_device_name(), mixed_precision, torch.backends.cuda.matmul.allow_tf32)


def table_peak_flops(device_name: str, mixed_precision: str, tf32: bool) -> float | None:
    """`PEAK_FLOPS`' figure for the precision the matmuls run in: bf16/fp16 under autocast, else tf32 where torch
    allows it, else fp32. None if no table entry is part of `device_name`."""
    figures = next((f for key, f in PEAK_FLOPS.items() if key in device_name), None)
    if figures is None:
        return None
    if mixed_precision in ("bf16", "fp16"):
        return figures[0]
    return figures[1] if tf32 else figures[2]


class ThroughputMeter:
    """Tokens and seconds of one process between two logging steps; eval and checkpoint time left out by `pause`."""

    def __init__(self, flops_per_token: float, peak: float | None) -> None:
        self.flops_per_token, self.peak = flops_per_token, peak
        self.tokens, self.seconds = 0, 0.0
        self._since: float | None = None

    def start(self, now: float) -> None:
        self._since = now

    def pause(self, now: float) -> None:
        if self._since is not None:
            self.seconds += now - self._since
            self._since = None

    def add_tokens(self, tokens: int) -> None:
        self.tokens += tokens

    def record(self, now: float) -> dict:
        """The interval's figures (`tokens_per_process`, `interval_seconds`, `tokens_per_second_per_process` and,
        with a known peak, `mfu`); then a new interval starts at `now`."""
        self.pause(now)
        rate = self.tokens / self.seconds if self.seconds > 0 else 0.0
        record = {"tokens_per_process": self.tokens, "interval_seconds": self.seconds,
                  "tokens_per_second_per_process": rate}
        if self.peak is not None:
            record["mfu"] = self.flops_per_token * rate / self.peak
        self.tokens, self.seconds = 0, 0.0
        self.start(now)
        return record
