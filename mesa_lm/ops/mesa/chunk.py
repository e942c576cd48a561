"""Chunkwise mesa layer with an implicit-differentiation backward.

Forward, streamed over groups of chunks: the states (H, G) at the group's chunk boundaries by a scan over chunks,
then x_t = (H_t + Lambda)^{-1} q_t for every position by one of the solvers in `solvers.py`, then o_t = G_t x_t as
(gated) linear attention with x as the query. Nothing of size T x D x D is ever formed.
Backward (science.md section 1), over the groups in reverse: with x_t kept from the forward,
dq_t = (H_t + Lambda)^{-1} G_t^T do_t is one more solve with the same matrices; the gradient into H_t is -dq_t x_t^T,
into Lambda -dq_t * x_t, into G_t do_t x_t^T. Read as outputs of linear attention with query x_t (held fixed) over G
(values beta v, output gradient do) and over H (values beta k, output gradient -dq), keys k, these flow to k, v,
beta, gamma and the initial state through the chunked linear-attention backward.
Saved for backward: x, the inputs and the states at segment boundaries (about every GROUP_TOKENS positions),
O(T D) per head; each group's chunk states and factorisations are recomputed.
On CPU the chunk states, the read-out and the backward outside the solves run in compiled kernels (`native.py`) where
they are available, with the same arithmetic as the torch code here, which stays their reference.
"""

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
    query_grad_group,
    scale,
    scan_state_grads,
    scan_states,
    start_state_grads,
    state_deltas,
)
from ..validation import check_chunk_size, check_mesa_inputs
from .native import applies as native_applies, chunk_backward as native_chunk_backward
from .native import chunk_states as native_chunk_states, query_grads as native_query_grads
from .native import read_out as native_read_out
from .solvers import METHODS, MesaSolver

Tensor = torch.Tensor


def default_cg_tol(dtype: torch.dtype) -> float:
    """Relative residual at which CG stops: about 100 ulps of the compute dtype."""
    return 1e-12 if dtype == torch.float64 else 1e-5


def _sym(x: Tensor) -> Tensor:
    return 0.5 * (x + x.transpose(-1, -2))


class _Group:
    """One group of chunks of the inputs, its decays and its chunk-boundary states (H and G)."""

    def __init__(self, grp: Groups, sl: slice, k, v, gamma, beta, lam, h0: Tensor, g0: Tensor):
        cd = grp.dtype
        self.k, self.v = grp.get(k, sl), grp.get(v, sl)
        self.gamma, self.beta = grp.get_gate(gamma, sl), grp.get_gate(beta, sl)
        self.lam = lam
        if native_applies(self.k):
            # The same by the compiled kernel (cpp_chunk_states.py), fused per batch and head.
            self.kb, self.vb, decay, self.hs, self.gs = native_chunk_states(
                self.k, self.v, self.gamma, self.beta, h0, g0
            )
            self.decay = Decay.make(None, grp.C, cd, k.device) if decay is None else Decay(*decay)
            return
        self.decay = Decay.make(self.gamma, grp.C, cd, k.device)
        # beta scales each token's contribution to both H and G: fold it into the written keys and values.
        b = None if self.beta is None else self.beta[..., None]
        self.kb = self.k if b is None else self.k * b
        self.vb = self.v if b is None else self.v * b
        w, al = self.decay.wlast, self.decay.alast
        self.hs = scan_states(state_deltas(self.k, self.kb, w), al, h0)  # (G + 1, B, H, D, D)
        self.gs = scan_states(state_deltas(self.k, self.vb, w), al, g0)  # (G + 1, B, H, Dv, D)

    def solver(self, method: str, cg_tol: float, cg_max_iter: int) -> MesaSolver:
        return MesaSolver(
            method, self.hs[:-1], self.k, self.kb, self.beta, self.lam, self.decay, cg_tol, cg_max_iter
        )


class MesaFunction(torch.autograd.Function):
    """o, (H_T, G_T) of the mesa layer; see `mesa_attention`."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, q, k, v, lam, gamma, beta, h0, g0, chunk_size, method, cg_tol, cg_max_iter
    ):
        # States and solves in the compute dtype even under autocast (reduced-precision states diverge).
        with torch.autocast(q.device.type, enabled=False):
            B, T, H, D = q.shape
            Dv = v.shape[-1]
            cd = torch.promote_types(q.dtype, torch.float32)
            grp = Groups(T, chunk_size, cd, B * H * max(D, v.shape[-1]))
            lam_c = lam.to(cd)
            lam_c = lam_c[:, None].expand(H, D) if lam.ndim == 1 else lam_c
            # Cholesky reads one triangle only; symmetrising H0 makes the op (and its gradient) well defined.
            h = q.new_zeros(B, H, D, D, dtype=cd) if h0 is None else _sym(h0.to(cd))
            g = q.new_zeros(B, H, Dv, D, dtype=cd) if g0 is None else g0.to(cd)
            keep = any(ctx.needs_input_grad)
            o = q.new_empty(v.shape)
            xs = q.new_empty(grp.N, B, H, grp.C, D, dtype=cd) if keep else None  # x_t, saved for the backward
            # The states at each segment's start, for the backward (not views: a view would keep the group alive).
            hc = q.new_empty(len(grp.segments), B, H, D, D, dtype=cd)
            gc = q.new_empty(len(grp.segments), B, H, Dv, D, dtype=cd)
            iterations = 0
            opts = (chunk_size, method, cg_tol, cg_max_iter)
            for i, segment in enumerate(grp.segments):
                hc[i], gc[i] = h, g
                for idx in segment:
                    # One function call per group: its temporaries are freed before the next group's are made.
                    h, g, its = _forward_group(grp, grp.slices[idx], q, (k, v, gamma, beta, lam_c, h, g), o, xs, opts)
                    iterations += its
        ctx.save_for_backward(xs, k, v, lam, gamma, beta, hc, gc)
        ctx.opts = opts
        ctx.dtypes = (q.dtype, None if h0 is None else h0.dtype, None if g0 is None else g0.dtype)
        ctx.iterations = iterations
        return o, h, g

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do, dh_t, dg_t):  # type: ignore[override]
        xs, k, v, lam, gamma, beta, hc, gc = ctx.saved_tensors
        chunk_size = ctx.opts[0]
        q_dtype, h0_dtype, g0_dtype = ctx.dtypes
        need = ctx.needs_input_grad
        with torch.autocast(k.device.type, enabled=False):
            B, T, H, D = k.shape
            cd = hc.dtype
            grp = Groups(T, chunk_size, cd, B * H * max(D, v.shape[-1]))
            lam_c = lam.to(cd)
            lam_c = lam_c[:, None].expand(H, D) if lam.ndim == 1 else lam_c
            need_gate = gamma is not None and need[4]
            need_beta = beta is not None and need[5]
            dq = k.new_empty(k.shape, dtype=q_dtype)
            dk, dv = torch.empty_like(k), torch.empty_like(v)
            dgamma = torch.empty_like(gamma) if need_gate else None
            dbeta = torch.empty_like(beta) if need_beta else None
            dlam = lam_c.new_zeros(H, D)
            # Gradients with respect to the states at the end of the current group.
            dh, dg = dh_t.to(cd), dg_t.to(cd)
            later = k.new_zeros(B, H, dtype=cd)  # sum of dc over later groups
            grads = (dq, dk, dv, dgamma, dbeta, dlam)
            last = len(grp.slices) - 1
            for i in range(len(grp.segments) - 1, -1, -1):
                segment = grp.segments[i]
                # The start states of the segment's groups, in order (each group's end is the next one's start;
                # only the states are kept, so one group's temporaries are alive at a time), then the groups'
                # backward in reverse, each rebuilt from its start.
                starts = [(hc[i], gc[i])]
                for idx in segment[:-1]:
                    gr = _Group(grp, grp.slices[idx], k, v, gamma, beta, lam_c, *starts[-1])
                    starts.append((gr.hs[-1].clone(), gr.gs[-1].clone()))
                    del gr
                for idx in reversed(segment):
                    gr = _Group(grp, grp.slices[idx], k, v, gamma, beta, lam_c, *starts.pop())
                    dh, dg, later = _backward_group(
                        grp, grp.slices[idx], gr, xs, do, (dh, dg), later, grads, ctx.opts, idx == last
                    )
                    del gr
            dlam = (dlam.sum(-1) if lam.ndim == 1 else dlam).to(lam.dtype) if need[3] else None
            dh0 = _sym(dh).to(h0_dtype) if h0_dtype is not None else None
            dg0 = dg.to(g0_dtype) if g0_dtype is not None else None
        return dq, dk, dv, dlam, dgamma, dbeta, dh0, dg0, None, None, None, None


def _forward_group(grp: Groups, sl: slice, q, inputs, o, xs, opts) -> tuple[Tensor, Tensor, int]:
    """The forward of one group of chunks: writes its outputs (and x, if xs is given) and returns the states at its
    end and the solver's iteration count."""
    gr = _Group(grp, sl, *inputs)
    solver = gr.solver(*opts[1:])
    x = solver.solve(grp.get(q, sl))
    read_out = native_read_out if native_applies(x) else linear_forward_group
    grp.put(o, sl, read_out(x, gr.k, gr.vb, gr.gs[:-1], gr.decay.a, gr.decay.dec))
    if xs is not None:
        xs[sl] = x
    return gr.hs[-1].clone(), gr.gs[-1].clone(), solver.iterations


def _backward_group(grp: Groups, sl: slice, gr: _Group, xs, do, dstate, later, grads, opts, is_last: bool):
    """The backward of one group of chunks `gr` (see the module docstring): writes its slices of the input gradients
    and returns the gradients with respect to the states at its start and the running sum of dc."""
    dq, dk, dv, dgamma, dbeta, dlam = grads
    x, dog = xs[sl], grp.get(do, sl)
    if native_applies(x):
        return _native_backward_group(grp, sl, gr, x, dog, dstate, later, grads, opts, is_last)
    dh, dg = dstate
    a, dec, wlast = gr.decay.a, gr.decay.dec, gr.decay.wlast
    doa = scale(dog, a)
    pg = output_scores(dog, gr.vb, dec)  # serves both r and the G part's backward below
    # r_t = G_t^T do_t, then dq_t = (H_t + Lambda)^{-1} r_t (the same symmetric matrix as the forward).
    r = query_grad_group(doa, gr.k, gr.gs[:-1], pg, None)
    dqg = gr.solver(*opts[1:]).solve(r)
    del r
    grp.put(dq, sl, dqg)
    m = dqg.neg_()  # d loss / d H_t = -dq_t x_t^T: the H part's output gradient is -dq
    dlam.add_((m * x).sum((0, 1, 3)))  # diagonal of -sum_t dq_t x_t^T
    # o_t = G_t x_t and p_t = H_t x_t (x held fixed): linear attention with query x over G (values
    # beta v, output gradient do) and over H (values beta k, output gradient -dq), keys k.
    dgs = scan_state_grads(start_state_grads(doa, x, None), gr.decay.alast, dg)
    dhs = scan_state_grads(start_state_grads(m, x, a), gr.decay.alast, dh)
    del doa
    parts = [(gr.vb, dog, gr.gs[:-1], dgs[1:]), (gr.kb, m, gr.hs[:-1], dhs[1:])]
    need_gate = dgamma is not None
    p = output_scores(m, gr.kb, dec).add_(pg)
    del pg
    _, dkg, (dvb, dkb), dcg = linear_backward_group(x, gr.k, parts, p, a, dec, wlast, False, need_gate)
    del parts, m, dog, p
    # Route the gradients of the written values beta v, beta k to v, k and beta.
    if gr.beta is not None:
        if dbeta is not None:
            grp.put_gate(dbeta, sl, (dvb * gr.v).sum(-1).add_((dkb * gr.k).sum(-1)))
        dvb.mul_(gr.beta[..., None])
        dkb.mul_(gr.beta[..., None])
    grp.put(dk, sl, dkg.add_(dkb))
    grp.put(dv, sl, dvb)
    if need_gate:
        later = _put_gate_grads(grp, sl, gr, dcg, dstate, later, dgamma, is_last)
    # Copies, not views: a view would keep this group's (G + 1) state gradients alive.
    return dhs[0].clone(), dgs[0].clone(), later


def _native_backward_group(grp: Groups, sl: slice, gr: _Group, x, dog, dstate, later, grads, opts, is_last: bool):
    """`_backward_group` by the compiled kernels of `cpp_linear_chunks.py` (the same arithmetic, fused per batch and
    head): on CPU, where they are available."""
    dq, dk, dv, dgamma, dbeta, dlam = grads
    d = gr.decay
    pg, r = native_query_grads(dog, gr.vb, gr.k, gr.gs[:-1], d.a, d.dec)
    dqg = gr.solver(*opts[1:]).solve(r)
    del r
    grp.put(dq, sl, dqg)
    m = dqg.neg_()
    need_gate, need_beta = dgamma is not None, dbeta is not None
    _, B, H, _, D = x.shape
    dlam_bh = x.new_zeros(B, H, D)
    inputs = (x, gr.k, gr.kb, gr.vb, None if gr.beta is None else gr.v)
    gates = (gr.beta, d.a, d.dec, d.wlast, d.alast)
    dkg, dvg, dbg, dcg, dh, dg = native_chunk_backward(
        inputs, gates, (gr.hs[:-1], gr.gs[:-1]), (dog, m, pg), dstate, dlam_bh, (need_beta, need_gate)
    )
    dlam.add_(dlam_bh.sum(0))
    grp.put(dk, sl, dkg)
    grp.put(dv, sl, dvg)
    if need_beta:
        grp.put_gate(dbeta, sl, dbg)
    if need_gate:
        later = _put_gate_grads(grp, sl, gr, dcg, dstate, later, dgamma, is_last)
    return dh, dg, later


def _put_gate_grads(grp: Groups, sl: slice, gr: _Group, dc, dstate, later, dgamma, is_last: bool) -> Tensor:
    """Writes the group's forget-gate gradients from dc (the gradient with respect to the log-cumsum of the gates at
    each position) and returns the updated sum of dc over this and later groups."""
    if is_last:
        # The final states decay with every gate: d loss / d c_T gains tr(dS_T^T S_T).
        dh, dg = dstate
        dc[-1, ..., -1] += (dg * gr.gs[-1]).sum((-1, -2)) + (dh * gr.hs[-1]).sum((-1, -2))
    dlog, later = log_gate_grads(dc, later)
    grp.put_gate(dgamma, sl, gate_grads(dlog, gr.gamma))
    return later


def mesa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    initial_state: tuple[Tensor, Tensor] | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    *,
    method: str = "auto",
    cg_tol: float | None = None,
    cg_max_iter: int | None = None,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """o_t = G_t (H_t + Lambda)^{-1} q_t, with
    H_t = gamma_t H_{t-1} + beta_t k_t k_t^T and G_t = gamma_t G_{t-1} + beta_t v_t k_t^T (Lambda is not decayed).

    q, k: (B, T, H, D); v: (B, T, H, Dv); lam: (H,) for Lambda = lam[h] I or (H, D) for diag(lam[h]), > 0;
    gamma, beta: (B, T, H) in (0, 1] or None (= 1) (a gamma of exactly 0 counts as the smallest normal number, with
    gradient 0 there); initial_state: (H0 (B, H, D, D), G0 (B, H, Dv, D)) or None,
    H0 used through its symmetric part (H0 + H0^T) / 2. Returns o (B, T, H, Dv) in q's dtype, plus
    (H_T, G_T) in the compute dtype (float32, or float64 for float64 inputs) if output_final_state.

    method: how x_t = (H_t + Lambda)^{-1} q_t is solved (see `solvers.py`): `woodbury` (exact, no forget gate: one
    C x C Cholesky per chunk), `cholesky` (exact, any gates: one D x D Cholesky per position), `cg` (conjugate
    gradient to relative residual `cg_tol`, at most `cg_max_iter` iterations, default 1e-5 (1e-12 in float64) and
    2 D + 10), `cg_exact` (exact, any gates: conjugate gradient to float rounding, preconditioned by a per-chunk
    Woodbury solve where gates stay near 1, chunks it cannot finish solved as `cholesky` does), or
    `auto` = `woodbury` without gamma, else `cg_exact`.
    Memory: saves x, k, v, the gates and the states at chunk boundaries; works on a bounded group of chunks at a time.
    For one decoding step, `mesa_attention_step` does the same in O(D^3) per head.
    """
    fn = "mesa_attention"
    B, T, H, D, Dv = check_mesa_inputs(fn, q, k, v, lam, gamma, beta, initial_state)
    check_chunk_size(fn, chunk_size)
    if method not in METHODS:
        raise ValueError(f"{fn}: method is {method!r}; expected one of {METHODS}")
    if method == "auto":
        method = "woodbury" if gamma is None else "cg_exact"
    if method == "woodbury" and gamma is not None:
        raise ValueError(
            f"{fn}: method 'woodbury' is exact only without a forget gate (Lambda is not decayed); "
            "use 'cg_exact' (the default), 'cholesky' or 'cg' with gamma"
        )
    cd = torch.promote_types(q.dtype, torch.float32)
    if cg_tol is None:
        cg_tol = default_cg_tol(cd)
    if cg_max_iter is None:
        cg_max_iter = 2 * D + 10
    if not cg_tol > 0 or isinstance(cg_max_iter, bool) or not isinstance(cg_max_iter, int) or cg_max_iter < 1:
        raise ValueError(f"{fn}: cg_tol={cg_tol!r} must be > 0 and cg_max_iter={cg_max_iter!r} an int >= 1")
    h0, g0 = (None, None) if initial_state is None else initial_state
    opts = (chunk_size, method, cg_tol, cg_max_iter)
    o, h_t, g_t = MesaFunction.apply(q, k, v, lam, gamma, beta, h0, g0, *opts)
    if not all_finite(o) and all_finite(lam, h0, g0):
        # A non-finite input: keep it out of the earlier positions of its chunk (see CausalGuard).
        g = CausalGuard(q, (k, v, gamma, beta))
        qc, kc, vc = g.clean_query(q), g.clean(k, 0.0), g.clean(v, 0.0)
        o, h_t, g_t = MesaFunction.apply(qc, kc, vc, lam, g.clean(gamma, 1.0), g.clean(beta, 1.0), h0, g0, *opts)
        o, h_t, g_t = g.output(o), g.state(h_t), g.state(g_t)
    return (o, (h_t, g_t)) if output_final_state else o
