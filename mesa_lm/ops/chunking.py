"""Shared machinery of the chunkwise ops: chunked layout, gate decays, state scans, and the chunked linear-attention
forward and backward that both linear attention and the mesa layer's read-out are built from.

The ops stream over groups of consecutive chunks (at most GROUP_TOKENS positions, and GROUP_ELEMENTS entries per
block). A group of the (B, T, H, F) inputs becomes a contiguous (G, B, H, C, F) block (zero-padded past T), whose
leading axes flatten into one batch axis for the batched matmuls. Zero keys and values with gate 1 leave every state
unchanged, so padding never changes a result. Per chunk, with local cumulative log-gates c_t = sum_{s<=t} log gamma_s:
    a[t]       = exp(c_t)                  decay from the chunk start to position t
    dec[t, i]  = exp(c_t - c_i), i <= t    decay from token i to position t (the causal mask when ungated)
    wlast[i]   = dec[C-1, i]               decay from token i to the chunk end
    alast      = a[C-1]                    decay of the whole chunk
Within a group, the states at the chunk boundaries come from a short scan over chunks; everything else is
chunk-parallel. The forward carries one state from group to group and keeps it at each group's start; the backward
visits the groups in reverse, recomputes their chunk states from those, and carries the state gradient back. Memory
beyond the inputs, outputs and gradients is therefore one group's worth, whatever T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# Positions per (batch, head) in one group of chunks: large enough for efficient batched matmuls, small enough that
# a group's temporaries (a few (C, C) and (C, D) blocks per chunk) stay cache-sized and a small part of the inputs.
GROUP_TOKENS = 256
# ...and at most about this many entries in one (G, B, H, C, D) block of a group (positions x batch x heads x D), at
# least one chunk: a group's dozen such blocks and its states then stay in the reference CPU's 32 MiB L3 (4 MiB
# blocks at D = 64, B H = 16 made the gated mesa layer 4% slower; 2^16 entries, 10-15% slower: smaller products).
GROUP_ELEMENTS = 2**17


def num_chunks(T: int, chunk_size: int) -> tuple[int, int]:
    """(C, N): the chunk length actually used (never longer than T) and the number of chunks."""
    C = min(chunk_size, T)
    return C, -(-T // C)


def chunk_groups(N: int, C: int, tokens: int | None = None) -> list[slice]:
    """Consecutive slices of the chunk axis, each about `tokens` (default GROUP_TOKENS) positions long."""
    step = max(1, (GROUP_TOKENS if tokens is None else tokens) // C)
    return [slice(start, min(N, start + step)) for start in range(0, N, step)]


class Groups:
    """Moves data between the (B, T, H, F) layout and one group of chunks (G, B, H, C, F) at a time."""

    def __init__(self, T: int, chunk_size: int, dtype: torch.dtype, row: int):
        """row: the entries of one position across batch, heads and features (B H D), which size the groups.

        `segments`: runs of consecutive group indices spanning about GROUP_TOKENS positions. The forward keeps the
        state for the backward at each segment's start only, so the entries cap never multiplies that memory (it is
        O(T / GROUP_TOKENS) states); the backward recomputes the states at the segment's other group starts first."""
        self.T, self.dtype = T, dtype
        self.C, self.N = num_chunks(T, chunk_size)
        self.slices = chunk_groups(self.N, self.C, min(GROUP_TOKENS, GROUP_ELEMENTS // max(row, 1)))
        per = max(1, max(1, GROUP_TOKENS // self.C) // (self.slices[0].stop - self.slices[0].start))
        self.segments = [list(range(i, min(i + per, len(self.slices)))) for i in range(0, len(self.slices), per)]

    def span(self, sl: slice) -> tuple[int, int]:
        """The token range [t0, t1) of the chunks `sl` (t1 < (sl.stop) * C for a ragged last chunk)."""
        return sl.start * self.C, min(sl.stop * self.C, self.T)

    def get(self, x: Tensor, sl: slice) -> Tensor:
        """(B, T, H, F) -> contiguous (G, B, H, C, F) in the compute dtype, zero-padded past T.
        May share memory with x when the permutation is trivial: callers never write into it."""
        t0, t1 = self.span(sl)
        G = sl.stop - sl.start
        x = x[:, t0:t1]
        if t1 - t0 != G * self.C:
            x = F.pad(x, (0, 0, 0, 0, 0, G * self.C - (t1 - t0)))
        B, _, H, Fd = x.shape
        return x.reshape(B, G, self.C, H, Fd).permute(1, 0, 3, 2, 4).to(self.dtype).contiguous()

    def get_gate(self, g: Tensor | None, sl: slice) -> Tensor | None:
        """(B, T, H) -> (G, B, H, C) in the compute dtype; padding gets 1 (no decay, scaling by 1)."""
        if g is None:
            return None
        t0, t1 = self.span(sl)
        G = sl.stop - sl.start
        g = g[:, t0:t1]
        if t1 - t0 != G * self.C:
            g = F.pad(g, (0, 0, 0, G * self.C - (t1 - t0)), value=1.0)
        B, _, H = g.shape
        return g.reshape(B, G, self.C, H).permute(1, 0, 3, 2).to(self.dtype).contiguous()

    def put(self, out: Tensor, sl: slice, y: Tensor) -> None:
        """Write a group (G, B, H, C, F) into out (B, T, H, F), dropping the padding."""
        t0, t1 = self.span(sl)
        G, B, H, C, Fd = y.shape
        if t1 - t0 == G * C:  # no padding: one strided copy straight into out
            out[:, t0:t1].view(B, G, C, H, Fd).copy_(y.permute(1, 0, 3, 2, 4))
        else:
            out[:, t0:t1] = y.permute(1, 0, 3, 2, 4).reshape(B, G * C, H, Fd)[:, : t1 - t0]

    def put_gate(self, out: Tensor, sl: slice, y: Tensor) -> None:
        """Write a per-position group (G, B, H, C) into out (B, T, H)."""
        self.put(out[..., None], sl, y[..., None])


@dataclass
class Decay:
    """Decays of one group of chunks (see the module docstring); all None for an ungated op, whose decays are 1."""

    a: Tensor | None  # (G, B, H, C)
    dec: Tensor  # (G, B, H, C, C), or the (C, C) causal mask when ungated
    wlast: Tensor | None  # (G, B, H, C)
    alast: Tensor | None  # (G, B, H)

    @classmethod
    def make(cls, gamma: Tensor | None, C: int, dtype: torch.dtype, device: torch.device) -> "Decay":
        """From a group's gates (G, B, H, C) or None."""
        causal = torch.ones(C, C, dtype=dtype, device=device).tril_()
        if gamma is None:
            return cls(None, causal, None, None)
        # A gate of exactly 0 (float32 sigmoid of a logit below about -104) is taken as the smallest normal number:
        # log 0 = -inf would make the differences below inf - inf = nan.
        cum = gamma.clamp_min(torch.finfo(gamma.dtype).tiny).log().cumsum(-1)
        # Zero the differences above the diagonal before exp (there they are positive and could overflow: inf * 0 =
        # nan), then the mask. Multiplying by the 0/1 mask is several times faster on CPU than masked_fill with -inf,
        # and exp of -inf takes a slow path.
        dec = (cum[..., :, None] - cum[..., None, :]).mul_(causal).exp_().mul_(causal)
        return cls(cum.exp(), dec, (cum[..., -1:] - cum).exp_(), cum[..., -1].exp())

    def sub(self, sl: slice) -> "Decay":
        """The decays of the chunks `sl` of this group."""
        if self.a is None:
            return self
        return Decay(self.a[sl], self.dec[sl], self.wlast[sl], self.alast[sl])


def scale(x: Tensor, w: Tensor | None) -> Tensor:
    """x * w[..., None] (w = None means 1)."""
    return x if w is None else x * w[..., None]


def add_matmul_(out: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """out += a @ b in place, for contiguous out (..., n, m) and a (..., n, r), b (..., r, m) with out's batch shape:
    one batched BLAS call that accumulates into out (no temporary product, no separate add)."""
    n, m = out.shape[-2:]
    batch = math.prod(out.shape[:-2])  # explicit: -1 is ambiguous for empty tensors
    out.view(batch, n, m).baddbmm_(a.reshape(batch, n, a.shape[-1]), b.reshape(batch, b.shape[-2], m))
    return out


def scan_states(delta: Tensor, alast: Tensor | None, s0: Tensor) -> Tensor:
    """States at the chunk boundaries of a group: out[0] = s0, out[n + 1] = alast[n] out[n] + delta[n].

    delta: (G, B, H, R, D); alast: (G, B, H) or None (= 1); s0: (B, H, R, D). Returns (G + 1, B, H, R, D).
    A sequential pass over chunks (not tokens) of small contiguous updates; everything heavy is chunk-parallel.
    """
    G = delta.shape[0]
    out = delta.new_empty(G + 1, *delta.shape[1:])
    out[0] = s0
    for n in range(G):
        if alast is None:
            torch.add(out[n], delta[n], out=out[n + 1])
        else:
            torch.addcmul(delta[n], alast[n, ..., None, None], out[n], out=out[n + 1])
    return out


def scan_state_grads(e: Tensor, alast: Tensor | None, ds_end: Tensor) -> Tensor:
    """Gradients with respect to the boundary states of `scan_states`: out[G] = ds_end (from everything after the
    group) and out[n] = alast[n] out[n + 1] + e[n], with e[n] the gradient chunk n's outputs send to its start state."""
    G = e.shape[0]
    out = e.new_empty(G + 1, *e.shape[1:])
    out[G] = ds_end
    for n in range(G - 1, -1, -1):
        if alast is None:
            torch.add(out[n + 1], e[n], out=out[n])
        else:
            torch.addcmul(e[n], alast[n, ..., None, None], out[n + 1], out=out[n])
    return out


def state_deltas(k: Tensor, v: Tensor, wlast: Tensor | None) -> Tensor:
    """Each chunk's own contribution to the state at its end: sum_i wlast[i] v_i k_i^T, (G, B, H, Dv, D)."""
    return scale(v, wlast).transpose(-1, -2) @ k


def start_state_grads(do: Tensor, q: Tensor, a: Tensor | None) -> Tensor:
    """Per chunk, the gradient its outputs send to its start state: sum_t a_t do_t q_t^T, (G, B, H, Dv, D)."""
    return scale(do, a).transpose(-1, -2) @ q


def linear_forward_group(q: Tensor, k: Tensor, v: Tensor, s: Tensor, a: Tensor | None, dec: Tensor) -> Tensor:
    """Outputs of a group of chunks: o_t = a_t S_n q_t + sum_{i<=t} dec[t, i] (k_i . q_t) v_i.

    q, k: (G, B, H, C, D); v: (G, B, H, C, Dv); s: (G, B, H, Dv, D) the states at the chunks' starts.
    """
    out = scale(q, a) @ s.transpose(-1, -2)
    return add_matmul_(out, (q @ k.transpose(-1, -2)).mul_(dec), v)


def output_scores(do: Tensor, v: Tensor, dec: Tensor) -> Tensor:
    """[t, i] = dec[t, i] (do_t . v_i): how an output gradient reaches each value of its chunk, (G, B, H, C, C)."""
    return (do @ v.transpose(-1, -2)).mul_(dec)


def query_grad_group(do: Tensor, k: Tensor, s: Tensor, p: Tensor, a: Tensor | None) -> Tensor:
    """Gradient of `linear_forward_group` with respect to q: a_t S_n^T do_t + sum_{i<=t} p[t, i] k_i, with
    p = output_scores(do, v, dec)."""
    return add_matmul_(scale(do, a) @ s, p, k)


def linear_backward_group(
    q: Tensor,
    k: Tensor,
    parts: Sequence[tuple[Tensor, Tensor, Tensor, Tensor]],
    p: Tensor,
    a: Tensor | None,
    dec: Tensor,
    wlast: Tensor | None,
    need_q: bool,
    need_gate: bool,
) -> tuple[Tensor | None, Tensor, list[Tensor], Tensor | None]:
    """Gradients of linear attention for a group of chunks, for one or more value/state parts sharing q and k.

    parts: (v, do, s, ds_end) per part: values (G, B, H, C, Dv), output gradients, states at the chunks' starts
    (G, B, H, Dv, D), and gradients with respect to the states at the chunks' ends (from `scan_state_grads`);
    p: the sum over parts of their `output_scores` (the caller often has them already; not modified).
    Returns (dq or None, dk, [dv per part], dc or None). dc[t] = q_t . dq_t - k_t . dk_t is the gradient with respect
    to the log-cumsum of the gates at t (a decay exp(c_t - c_i) pairs a query at t with a key at i); the caller adds
    the final state's own term and reverse-cumsums it into log-gate gradients.
    """
    # Products that add into an existing result accumulate in place (add_matmul_): no temporary, no extra pass.
    dk = p.transpose(-1, -2) @ q
    for v, _, _, ds in parts:
        add_matmul_(dk, scale(v, wlast), ds)
    qk = q @ k.transpose(-1, -2)
    dq = qdq = None
    if need_q:
        dq = p @ k
        for _, do, s, _ in parts:
            add_matmul_(dq, scale(do, a), s)
        if need_gate:
            qdq = (q * dq).sum(-1)
    elif need_gate:
        # q_t . dq_t without dq: the in-chunk part q_t . sum_i p[t, i] k_i is sum_i p[t, i] (q_t . k_i).
        qdq = (p * qk).sum(-1)
        for _, do, s, _ in parts:
            qdq += (q * (scale(do, a) @ s)).sum(-1)
    del p
    sqk = qk.mul_(dec).transpose(-1, -2)  # [i, t] = dec[t, i] (q_t . k_i)
    kw = scale(k, wlast)
    dvs = [add_matmul_(sqk @ do, kw, ds.transpose(-1, -2)) for _, do, _, ds in parts]
    dc = qdq.sub_((k * dk).sum(-1)) if need_gate else None
    return dq, dk, dvs, dc


def log_gate_grads(dc: Tensor, later: Tensor) -> tuple[Tensor, Tensor]:
    """d loss / d log gamma for a group from dc (G, B, H, C): the log-gate at s enters every c_t with t >= s.

    later: (B, H) the sum of dc over all later groups. Returns (G, B, H, C) and the updated running sum.
    """
    G, B, H, C = dc.shape
    seq = dc.permute(1, 2, 0, 3).reshape(B, H, G * C)
    suffix = seq.flip(-1).cumsum(-1).flip(-1) + later[..., None]
    return suffix.reshape(B, H, G, C).permute(2, 0, 1, 3), suffix[..., 0]


def gate_grads(dlog: Tensor, gamma: Tensor) -> Tensor:
    """d loss / d gamma = (d loss / d log gamma) / gamma. At a gate below the smallest normal number (taken as that
    number by `Decay.make`) the log-space gradient has no finite quotient: it is 0 there, as a saturated sigmoid's
    derivative makes it anyway."""
    tiny = torch.finfo(gamma.dtype).tiny
    return torch.where(gamma < tiny, 0.0, dlog / gamma.clamp_min(tiny))  # a NaN gate stays NaN


def all_finite(*xs: Tensor | None) -> bool:
    """Whether every given tensor is free of NaN and inf (None counts as finite), by one host sync on the sum of
    their sums: a NaN or inf anywhere makes it non-finite. (A finite sum that overflows answers False too; callers
    only use False to take a slower path that is equally correct.) Under torch.compile it answers True without
    looking: reading a value back would break the graph, so compiled code keeps the fast path only."""
    if torch.compiler.is_compiling():
        return True
    total = None
    for x in xs:
        if x is not None:
            s = x.sum(dtype=torch.float32) if x.dtype in (torch.float16, torch.bfloat16) else x.sum()
            total = s if total is None else total + s
    return total is None or bool(torch.isfinite(total))


class CausalGuard:
    """Keeps a non-finite input at position t out of every position before t.

    The chunked products mix a whole chunk at once: a causal 0/1 mask times a NaN score, or a zero weight times a NaN
    value inside a matmul, is NaN, so one NaN at t would spoil the chunk's earlier positions (and, through the
    backward's reverse scans, more). The ops run their fast path first and call this only if the output is not
    finite: the positions holding a non-finite write (k, v, a gate) are replaced by a neutral one (zero key and value,
    gate 1), the op runs again, and then every output from the first such position on, and each position with a
    non-finite query, is set to NaN, as the step-by-step recurrence gives. Outputs before t are then exactly those of
    the sequence cut before t, and their gradients stay finite (the filled positions pass no gradient).
    """

    def __init__(self, q: Tensor, writes: Sequence[Tensor | None]):
        bad = torch.zeros(q.shape[:3], dtype=torch.bool, device=q.device)  # (B, T, H): a non-finite write
        for x in writes:
            if x is not None:
                nf = ~torch.isfinite(x)
                bad |= nf.any(-1) if x.dim() == 4 else nf
        self.bad = bad
        self.bad_q = (~torch.isfinite(q)).any(-1)
        self.poison = (bad.cumsum(1) > 0) | self.bad_q  # outputs the recurrence makes non-finite

    def clean(self, x: Tensor | None, fill: float) -> Tensor | None:
        """x (B, T, H, F) or a gate (B, T, H) with the non-finite writes replaced by `fill`."""
        if x is None:
            return None
        return x.masked_fill(self.bad[..., None] if x.dim() == 4 else self.bad, fill)

    def clean_query(self, q: Tensor) -> Tensor:
        return q.masked_fill(self.bad_q[..., None], 0.0)

    def output(self, o: Tensor) -> Tensor:
        return o.masked_fill(self.poison[..., None], float("nan"))

    def state(self, s: Tensor) -> Tensor:
        """A final state (B, H, ...): NaN wherever any write of its row was non-finite."""
        hit = self.bad.any(1)
        return s.masked_fill(hit.view(*hit.shape, *([1] * (s.dim() - 2))), float("nan"))
