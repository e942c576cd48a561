"""Chunkwise linear attention: states at chunk boundaries, masked products within a chunk, streamed over groups of
chunks. The custom backward keeps only the inputs and the states at group boundaries and recomputes each group's
chunk states and products, so memory beyond inputs, outputs and gradients is bounded by one group."""

from __future__ import annotations

import torch

from ..chunking import (
    CausalGuard,
    Decay,
    all_finite,
    gate_grads,
    Groups,
    linear_backward_group,
    linear_forward_group,
    log_gate_grads,
    output_scores,
    scan_state_grads,
    scan_states,
    start_state_grads,
    state_deltas,
)
from ..validation import check_chunk_size, check_linear_inputs

Tensor = torch.Tensor


class LinearAttentionFunction(torch.autograd.Function):
    """o, S_T = chunked linear attention; see `linear_attention`."""

    @staticmethod
    def forward(ctx, q, k, v, gamma, s0, chunk_size):  # type: ignore[override]
        # States and products in the compute dtype even under autocast (bf16 states lose the long-range sum).
        with torch.autocast(q.device.type, enabled=False):
            B, T, H, D = q.shape
            cd = torch.promote_types(q.dtype, torch.float32)
            grp = Groups(T, chunk_size, cd, B * H * max(D, v.shape[-1]))
            s = q.new_zeros(B, H, v.shape[-1], D, dtype=cd) if s0 is None else s0.to(cd)
            o = q.new_empty(v.shape)
            # The state at each segment's start, for the backward (not views: a view would keep the group alive).
            checkpoints = q.new_empty(len(grp.segments), *s.shape, dtype=cd)
            for i, segment in enumerate(grp.segments):
                checkpoints[i] = s
                for idx in segment:
                    sl = grp.slices[idx]
                    qg, kg, vg = grp.get(q, sl), grp.get(k, sl), grp.get(v, sl)
                    dc = Decay.make(grp.get_gate(gamma, sl), grp.C, cd, q.device)
                    states = scan_states(state_deltas(kg, vg, dc.wlast), dc.alast, s)
                    grp.put(o, sl, linear_forward_group(qg, kg, vg, states[:-1], dc.a, dc.dec))
                    s = states[-1].clone()
        ctx.save_for_backward(q, k, v, gamma, s0, checkpoints)
        ctx.chunk_size = chunk_size
        return o, s

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do, ds_final):  # type: ignore[override]
        q, k, v, gamma, s0, checkpoints = ctx.saved_tensors
        with torch.autocast(q.device.type, enabled=False):
            B, T, H, D = q.shape
            cd = checkpoints.dtype
            grp = Groups(T, ctx.chunk_size, cd, B * H * max(D, v.shape[-1]))
            need_gate = gamma is not None and ctx.needs_input_grad[3]
            dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
            dgamma = torch.empty_like(gamma) if need_gate else None
            ds = ds_final.to(cd)  # gradient with respect to the state at the end of the current group
            later = q.new_zeros(B, H, dtype=cd)  # sum of dc over later groups
            last = len(grp.slices) - 1
            for i in range(len(grp.segments) - 1, -1, -1):
                # The segment's groups rebuilt in order (each starts from the previous one's end), then their
                # backward in reverse; the segment spans about GROUP_TOKENS positions, as an old-size group did.
                built, start = [], checkpoints[i]
                for idx in grp.segments[i]:
                    sl = grp.slices[idx]
                    kg, vg, gg = grp.get(k, sl), grp.get(v, sl), grp.get_gate(gamma, sl)
                    dc = Decay.make(gg, grp.C, cd, q.device)
                    states = scan_states(state_deltas(kg, vg, dc.wlast), dc.alast, start)
                    built.append((idx, kg, vg, gg, dc, states))
                    start = states[-1]
                del start, kg, vg, gg, dc, states
                while built:
                    idx, kg, vg, gg, dc, states = built.pop()
                    sl = grp.slices[idx]
                    qg, dog = grp.get(q, sl), grp.get(do, sl)
                    dstates = scan_state_grads(start_state_grads(dog, qg, dc.a), dc.alast, ds)
                    part = (vg, dog, states[:-1], dstates[1:])
                    p = output_scores(dog, vg, dc.dec)
                    grads = linear_backward_group(qg, kg, [part], p, dc.a, dc.dec, dc.wlast, True, need_gate)
                    dqg, dkg, (dvg,), dcg = grads
                    grp.put(dq, sl, dqg)
                    grp.put(dk, sl, dkg)
                    grp.put(dv, sl, dvg)
                    if need_gate:
                        if idx == last:
                            # The final state decays with every gate: d loss / d c_T gains tr(dS_T^T S_T).
                            dcg[-1, ..., -1] += (ds * states[-1]).sum((-1, -2))
                        dlog, later = log_gate_grads(dcg, later)
                        grp.put_gate(dgamma, sl, gate_grads(dlog, gg))
                    ds = dstates[0]
            ds0 = ds.to(s0.dtype) if s0 is not None else None
        return dq, dk, dv, dgamma, ds0, None


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gamma: Tensor | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> Tensor | tuple[Tensor, Tensor]:
    """o_t = S_t q_t with S_t = gamma_t S_{t-1} + v_t k_t^T, S_0 = initial_state or 0 (no softmax, normaliser or scale).

    q, k: (B, T, H, D); v: (B, T, H, Dv); gamma: (B, T, H) in (0, 1] or None (a gate of exactly 0, as a float32
    sigmoid gives, is taken as the smallest normal number, and its own gradient is 0); initial_state: (B, H, Dv, D).
    Returns o (B, T, H, Dv) in q's dtype, plus S_T in the compute dtype if output_final_state.
    Chunkwise-parallel; the backward recomputes per group of chunks from the inputs and a few saved states.
    For one decoding step, `linear_attention_step` does the same in O(Dv D) per head.
    """
    fn = "linear_attention"
    check_linear_inputs(fn, q, k, v, gamma, initial_state)
    check_chunk_size(fn, chunk_size)
    o, s = LinearAttentionFunction.apply(q, k, v, gamma, initial_state, chunk_size)
    if not all_finite(o) and all_finite(initial_state):
        # A non-finite input: keep it out of the earlier positions of its chunk (see CausalGuard).
        g = CausalGuard(q, (k, v, gamma))
        qc, kc, vc, gc = g.clean_query(q), g.clean(k, 0.0), g.clean(v, 0.0), g.clean(gamma, 1.0)
        o, s = LinearAttentionFunction.apply(qc, kc, vc, gc, initial_state, chunk_size)
        o, s = g.output(o), g.state(s)
    return (o, s) if output_final_state else o
