"""Per-position solves x_t = (H_t + Lambda)^{-1} b_t for every position of a chunked sequence.

H_t = a_t H_n + sum_{i<=t in chunk n} dec[t, i] beta_i k_i k_i^T, with H_n the state at the start of chunk n. The same
solver answers the forward (b = q) and the backward (b = G^T do: the matrix is symmetric). Three methods:

- `woodbury` (exact, ungated only): with R = (H_n + Lambda)^{-1} from a Cholesky factor at each chunk boundary,
  (H_n + Lambda + K_t^T K_t)^{-1} = R - R K_t^T (I + K_t R K_t^T)^{-1} K_t R for the chunk's first t keys K_t (scaled
  by sqrt(beta)). I + K_t R K_t^T is the leading t x t block of A = I + K R K^T, and the leading blocks of A's
  Cholesky factor L (and of L^{-1}) are the factors of A's leading blocks, so one C x C factorisation per chunk
  serves every position: Z = L^{-T} triu(L^{-1} K R B^T) holds A_t^{-1} K_t R b_t in column t.
  Accuracy: the correction R K^T A^{-1} K R b cancels most of R b when keys reach far beyond Lambda and the state
  (k^T R k large), and float32 loses digits in that cancellation (up to 10x the error of a direct float32 solve at
  k^T R k ~ 100). Chunks with k^T R k > WOODBURY_REACH get one step of iterative refinement (the residual by one
  matrix-vector pass), chunks beyond REFINE_REACH the per-position solve; with L2-normalised keys and Lambda >= I/3
  neither runs.
- `cholesky` (exact, any gates): materialise H_t for a few positions at a time and factor each (O(D^3) per position);
  in float64 where H_t outgrows Lambda by WIDE_RATIO (float32 rounding of H_t would swamp Lambda), and by LU where
  rounding has left a matrix indefinite.
- `cg_exact` (exact, any gates, the gated default): conjugate gradient run until the residual is at float rounding
  (relative CG_EXACT_ROUNDING eps), preconditioned by `preconditioner.DecayedRegulariserSolve` (a per-chunk Woodbury
  solve of the matrix with Lambda decayed too; condition number <= sqrt of the chunk's decay) where every chunk of
  the group decays by at most WOODBURY_CG_RANGE, else by Jacobi. Chunks with a system not converged in 2 D + 10
  iterations, or where float32 would lose digits (as for `woodbury` and `cholesky`), take the per-position solve,
  so the result is as accurate as `cholesky`'s; `iterations` and `direct_chunks` count what ran.
- `cg` (iterative, any gates): Jacobi-preconditioned conjugate gradient from the Jacobi start x = b / diag, every
  position its own system, stopped per system when ||r|| <= tol ||b|| (finished systems are masked, not guarded by
  epsilons); each matrix product is a gated linear-attention pass with the keys as values.

Jacobi CG (for `cg`, and `cg_exact` on strongly decaying chunks) works on sub-chunks of JACOBI_CHUNK positions with
their own start states (a scan within each chunk, once per solve): a product with M_t then costs D^2 + 2 c D per
position for sub-chunks of c instead of D^2 + 2 C D for chunks of C (half at C = D = 64). It skips the diagonal
scaling where no system's diagonal spreads beyond JACOBI_SPREAD (the condition number changes by at most that factor;
the iterations and their stopping test are those of plain CG). Both CGs run on a few chunks at a time (CG_ELEMENTS);
Jacobi CG's per-iteration work is written as few passes over the vectors as eager torch allows: that, not the
arithmetic, is most of the gated layer's time on a CPU.
"""

from __future__ import annotations

import torch

from ..chunking import Decay, chunk_groups, scale, scan_states, state_deltas
from .native import applies as native_applies, jacobi_cg as native_jacobi_cg
from .preconditioner import DecayedRegulariserSolve
from .triangular import lower_inverse

Tensor = torch.Tensor

METHODS = ("auto", "woodbury", "cholesky", "cg", "cg_exact")
# CG solves groups of chunks of about this many vector entries at once (positions x batch x heads x D): larger
# parts mean fewer, larger operations per iteration, smaller ones bound the memory of its vectors and states and keep
# them in cache (measured on the reference CPU: 256 positions per (batch, head) at D = 32, B H = 16, and 128 at D = 64).
CG_ELEMENTS = 2**17
# `cg_exact` stops where the relative residual reaches float rounding, CG_EXACT_ROUNDING eps.
CG_EXACT_ROUNDING = 4.0
# `cg_exact` takes the Woodbury preconditioner where no chunk decays by more than this (condition number <= its
# square root, about 6 iterations to float32 rounding); beyond it Jacobi (cheaper iterations, data-dependent count).
WOODBURY_CG_RANGE = 2.0
# Jacobi CG works on sub-chunks of this many positions (when they divide the chunk): a product with M_t costs
# D^2 + 2 C D per position for chunks of C, so shorter chunks make each iteration cheaper; their start states cost
# one (D, D) product per sub-chunk, once per solve.
JACOBI_CHUNK = 16
# The compiled kernel (native.py) works on sub-chunks of this many positions: its products cost no per-call overhead,
# so shorter ones than the eager solver's pay (measured on the reference CPU: 8 is 6% faster than 16 at D = 32 and 64).
NATIVE_SUB_CHUNK = 8
# Jacobi CG scales by the diagonal only where some system's diagonal entries differ by more than this factor.
JACOBI_SPREAD = 2.0
# Positions per (batch, head) whose (D, D) matrices the per-position method holds at once.
CHOLESKY_TOKENS = 64
# Woodbury's accuracy in float32 against a direct solve depends on how far a chunk's keys reach beyond the state and
# Lambda, k^T (H_n + Lambda)^{-1} k (measured in tests/ops/test_solve_accuracy.py): up to WOODBURY_REACH it is within
# the float32 floor, up to REFINE_REACH one refinement step brings it there, beyond that it solves per position.
WOODBURY_REACH = 3.0
REFINE_REACH = 1e3
# The per-position solve widens to float64 where a diagonal entry of H_t + Lambda exceeds this multiple of Lambda's.
WIDE_RATIO = 1e4


def spd_solve(m: Tensor, b: Tensor) -> Tensor:
    """m^{-1} b for symmetric matrices m (..., n, n) that are positive definite in exact arithmetic, b (..., n).

    Cholesky, except where float rounding has made m indefinite (large keys against a small Lambda): there
    Cholesky fails and an LU solve answers, as accurately as any float solve of the rounded matrix can."""
    chol, info = torch.linalg.cholesky_ex(m)
    x = torch.cholesky_solve(b[..., None], chol).squeeze(-1)
    if torch.compiler.is_compiling():  # no value read-backs (graph breaks) under torch.compile: Cholesky only
        return x
    failed = info > 0
    if bool(failed.any()):
        x[failed] = torch.linalg.solve(m[failed], b[failed])
    return x


class MesaSolver:
    """Solves for every position of one group of chunks; right-hand sides (G, B, H, C, D). See the module docstring."""

    def __init__(
        self,
        method: str,
        h: Tensor,
        k: Tensor,
        kb: Tensor,
        beta: Tensor | None,
        lam: Tensor,
        decay: Decay,
        cg_tol: float,
        cg_max_iter: int,
    ):
        # h: (G, B, H, D, D) states at the chunks' starts; k, kb = beta k: (G, B, H, C, D); beta: (G, B, H, C) or
        # None; lam: (H, D), the diagonal of Lambda; decay: the group's decays.
        self.method, self.h, self.k, self.kb, self.beta, self.lam, self.decay = method, h, k, kb, beta, lam, decay
        self.cg_tol, self.cg_max_iter = cg_tol, cg_max_iter
        self.iterations = 0  # CG iterations run (for diagnostics and benchmarks)
        self.direct_chunks = 0  # chunks `cg_exact` handed to the per-position solve
        self._factors: tuple[Tensor, Tensor, Tensor] | None = None
        self._pre: DecayedRegulariserSolve | None = None
        self.reach: Tensor | None = None

    def solve(self, b: Tensor) -> Tensor:
        if self.method == "woodbury":
            return self._woodbury(b)
        if self.method in ("cg", "cg_exact"):
            return self._in_parts(b)
        return self._per_position(b)

    def _in_parts(self, b: Tensor) -> Tensor:
        """CG on a few chunks at a time (about CG_ELEMENTS vector entries): its vectors are the largest temporaries."""
        _, B, H, C, D = b.shape
        parts = chunk_groups(b.shape[0], C, max(C, CG_ELEMENTS // (B * H * D)))
        x = None if len(parts) == 1 else torch.empty_like(b)
        for sl in parts:
            beta = None if self.beta is None else self.beta[sl]
            part = MesaSolver(self.method, self.h[sl], self.k[sl], self.kb[sl], beta, self.lam, self.decay.sub(sl),
                              self.cg_tol, self.cg_max_iter)  # fmt: skip
            xp = part._cg(b[sl]) if self.method == "cg" else part._cg_exact(b[sl])
            self.iterations += part.iterations
            self.direct_chunks += part.direct_chunks
            if x is None:
                return xp  # one part: its result is the answer (no copy)
            x[sl] = xp
        return x

    def _per_position(self, b: Tensor, chunks: Tensor | None = None) -> Tensor:
        """`cholesky` for all chunks of the group, or only for the chunk indices `chunks` (then b holds those)."""
        # The per-position method holds a (D, D) matrix per position: a few chunks at a time bound that memory.
        x = torch.empty_like(b)
        for sl in chunk_groups(b.shape[0], b.shape[3], CHOLESKY_TOKENS):
            idx = sl if chunks is None else chunks[sl]
            x[sl] = self._cholesky(idx, b[sl])
        return x

    def _woodbury_factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """li = L^{-1} (R = li^T li), w = li K^T, lai = L_A^{-1} for A = I + w^T w; computed once per solver."""
        if self._factors is None:
            ks = self.k if self.beta is None else self.k * self.beta[..., None].sqrt()
            li = lower_inverse(self.h + torch.diag_embed(self.lam))  # R = (H_n + Lambda)^{-1} = li^T li
            w = li @ ks.transpose(-1, -2)  # (D, C): A = I + w^T w = I + K R K^T
            gram = _identity_plus_gram(w)
            # k_i^T R k_i = diag(A) - 1: how far the chunk's keys reach beyond Lambda (see the module docstring).
            self.reach = gram.diagonal(dim1=-2, dim2=-1).amax(-1) - 1.0  # (G, B, H)
            self._factors = li, w, lower_inverse(gram)
        return self._factors

    def _woodbury_apply(self, b: Tensor) -> Tensor:
        li, w, lai = self._woodbury_factors()
        bw = li @ b.transpose(-1, -2)  # (D, C)
        y = (lai @ (w.transpose(-1, -2) @ bw)).triu_()  # column t: L_t^{-1} K_t R b_t, zero below row t
        z = lai.transpose(-1, -2) @ y  # column t: A_t^{-1} K_t R b_t (zero below row t)
        return (bw - w @ z).transpose(-1, -2) @ li  # rows: R b_t - R K_t^T z_t

    def _woodbury(self, b: Tensor) -> Tensor:
        x = self._woodbury_apply(b)
        if torch.compiler.is_compiling():  # the choices below read values back, which would break the graph
            return x
        reach = self.reach.flatten(1).amax(1)  # (G,): the largest k^T R k in each chunk
        refine = reach > WOODBURY_REACH
        if not bool(refine.any()):
            return x
        # Far-reaching keys: the correction R K^T A^{-1} K R b cancels most of R b and loses digits. One step of
        # iterative refinement with the exact residual's float rounding, b - (H_t + Lambda) x, recovers them while
        # the Woodbury error is well below 1; beyond REFINE_REACH the chunks are solved position by position.
        x = x + self._woodbury_apply(b - self._matvec(x))
        direct = (reach > REFINE_REACH).nonzero().flatten()
        if direct.numel():
            x[direct] = self._per_position(b[direct], direct)
        return x

    def _matrices(self, sl: slice | Tensor, dtype: torch.dtype) -> Tensor:
        """H_t + Lambda for every position of the chunks `sl`, (G', B, H, C, D, D) in `dtype`."""
        decay = self.decay.sub(sl)
        k, kb, h = self.k[sl].to(dtype), self.kb[sl].to(dtype), self.h[sl].to(dtype)
        dec, a = decay.dec.to(dtype), None if decay.a is None else decay.a.to(dtype)
        D = k.shape[-1]
        outer = (kb[..., :, None] * k[..., None, :]).flatten(-2)  # (G, B, H, C, D * D)
        hs = (dec @ outer).unflatten(-1, (D, D))  # sum_{i<=t} dec[t, i] beta_i k_i k_i^T per position
        hs += torch.diag_embed(self.lam.to(dtype))[:, None]
        hs += h[:, :, :, None] if a is None else a[..., None, None] * h[:, :, :, None]
        return hs

    def _cholesky(self, sl: slice | Tensor, b: Tensor) -> Tensor:
        hs = self._matrices(sl, b.dtype)
        if b.dtype != torch.float64 and not torch.compiler.is_compiling():
            # Once H_t outgrows Lambda by more than WIDE_RATIO, the rounding of H_t's float32 entries swamps Lambda
            # (the float32 floor); summing the chunk's keys and solving in float64 keeps the chunk's own part exact.
            big = hs.diagonal(dim1=-2, dim2=-1).amax() > WIDE_RATIO * self.lam.amin()
            if bool(big):
                return spd_solve(self._matrices(sl, torch.float64), b.double()).to(b.dtype)
        return spd_solve(hs, b)

    def _matvec(self, p: Tensor, out: Tensor | None = None) -> Tensor:
        """(H_t + Lambda) p_t for every position (H_n symmetric: p H_n = (H_n p)^T), into `out` if given."""
        out = torch.matmul(p, self.h, out=out)
        out = out if out.is_contiguous() else out.contiguous()
        if self.decay.a is not None:
            out.mul_(self.decay.a[..., None])  # a_t H_n p_t
        inner = (p @ self.k.transpose(-1, -2)).mul_(self.decay.dec)  # [t, i] = dec[t, i] (k_i . p_t)
        C, D = p.shape[-2:]
        out.view(-1, C, D).baddbmm_(inner.view(-1, C, C), self.kb.reshape(-1, C, D))
        return out.addcmul_(p, self.lam[:, None])

    def _preconditioner(self) -> DecayedRegulariserSolve:
        if self._pre is None:
            self._pre = DecayedRegulariserSolve(self.h, self.k, self.beta, self.lam, self.decay)
        return self._pre

    def _woodbury_cg(self, b: Tensor, tol: float, max_iter: int) -> tuple[Tensor, Tensor]:
        """CG on P_t^{-1} M_t x_t = P_t^{-1} b_t, P_t from `DecayedRegulariserSolve`. With M_t = P_t + s_t Lambda the
        operator is I + s_t P_t^{-1} Lambda: self-adjoint and positive definite in the inner product u^T Lambda v, so CG
        runs in that inner product and needs one preconditioner solve per iteration and no product with M_t. Every
        position is its own system, stopped when ||r||_Lambda <= tol ||P_t^{-1} b_t||_Lambda (finished systems take
        zero steps: no 0 / 0). Returns x and the mask of systems still active."""
        pre = self._preconditioner()
        lam = self.lam[:, None]  # (H, 1, D)
        r = pre(b)
        x = torch.zeros_like(r)
        p = r.clone()
        rr = (r * lam * r).sum(-1, keepdim=True)
        stop = rr * tol**2
        active = rr > stop
        for _ in range(max_iter):
            if not bool(active.any()):
                break
            self.iterations += 1
            lp = p * lam
            tp = pre(lp).mul_(pre.shift).add_(p)
            ptp = (lp * tp).sum(-1, keepdim=True)
            alpha = torch.where(active, rr / torch.where(active, ptp, 1.0), 0.0)
            x.addcmul_(alpha, p)
            r.addcmul_(alpha, tp, value=-1.0)
            rr_new = (r * lam * r).sum(-1, keepdim=True)
            beta = torch.where(active, rr_new / torch.where(active, rr, 1.0), 0.0)
            p = r + beta * p
            rr = torch.where(active, rr_new, rr)
            active = rr > stop
        return x, active

    def _cg_exact(self, b: Tensor) -> Tensor:
        """`cg_exact`: CG to float rounding, by `_woodbury_cg` where every chunk of the group decays by at most
        WOODBURY_CG_RANGE (its iteration count is then bounded whatever H and Lambda), else by `_jacobi_cg`. Chunks with
        a system not converged in 2 D + 10 iterations, where H_t outgrows Lambda (the per-position solve widens to
        float64) or, for the Woodbury preconditioner, where keys reach far beyond its base (its float32 solve loses
        digits) are solved per position: the result is always that of an exact solve."""
        if torch.compiler.is_compiling():  # CG's choices and stopping test read values back (graph breaks)
            return self._per_position(b)
        tol, max_iter = CG_EXACT_ROUNDING * torch.finfo(b.dtype).eps, 2 * b.shape[-1] + 10
        a = self.decay.a
        use_woodbury = a is None or bool((a[..., 0] / a[..., -1]).amax() <= WOODBURY_CG_RANGE)
        if use_woodbury:
            x, active = self._woodbury_cg(b, tol, max_iter)
            bad = active.flatten(1).any(1) | (self._preconditioner().reach.flatten(1).amax(1) > WOODBURY_REACH)
        else:
            x, active, peak = self._fine_jacobi_cg(b, tol, max_iter)
            bad = active.flatten(1).any(1)
        if b.dtype != torch.float64:
            peak = self._diagonals().flatten(1).amax(1) if use_woodbury else peak
            bad |= peak > WIDE_RATIO * self.lam.amin()
        direct = bad.nonzero().flatten()
        self.direct_chunks += direct.numel()
        if direct.numel():
            x[direct] = self._per_position(b[direct], direct)
        return x

    def _diagonals(self) -> Tensor:
        """The diagonals of H_t + Lambda, (G, B, H, C, D)."""
        hdiag = scale(self.h.diagonal(dim1=-2, dim2=-1)[..., None, :], self.decay.a)  # (G, B, H, C or 1, D)
        return hdiag + self.decay.dec @ (self.kb * self.k) + self.lam[:, None]

    def _cg(self, b: Tensor) -> Tensor:
        return self._fine_jacobi_cg(b, self.cg_tol, self.cg_max_iter)[0]

    def _fine_jacobi_cg(self, b: Tensor, tol: float, max_iter: int) -> tuple[Tensor, Tensor, Tensor]:
        """`_jacobi_cg` on sub-chunks of JACOBI_CHUNK positions (the same systems, cheaper products); x, the
        not-converged mask and the diagonal peaks come back in this solver's (G, B, H, C, ...) layout. On CPU the
        compiled kernel of `native.py` solves them (the same systems and stopping rule), where it is available."""
        if native_applies(b):
            x, active, peak, iterations = native_jacobi_cg(
                self.h, self.k, self.kb, self.decay.a, self.decay.dec, self.lam, b, tol, max_iter, NATIVE_SUB_CHUNK
            )
            self.iterations += iterations
            return x, active, peak
        G, C = b.shape[0], b.shape[3]
        cs = JACOBI_CHUNK
        if C <= cs or C % cs:
            return self._jacobi_cg(b, tol, max_iter)
        m = C // cs
        fine = self._subchunks(m)
        x, active, peak = fine._jacobi_cg(_split_chunks(b, m), tol, max_iter)
        self.iterations += fine.iterations
        return _merge_chunks(x, m), _merge_chunks(active, m), peak.view(m, G).amax(0)

    def _subchunks(self, m: int) -> "MesaSolver":
        """This solver's systems with each chunk cut into m sub-chunks, (m G, B, H, C / m, D), their start states by
        a scan within each chunk (for `_jacobi_cg`: no beta, no preconditioner)."""
        G, C = self.k.shape[0], self.k.shape[3]
        cs = C // m
        k, kb = _split_chunks(self.k, m), _split_chunks(self.kb, m)
        dec = self.decay.dec
        if self.decay.a is None:
            sub = Decay(None, dec[:cs, :cs], None, None)
        else:
            # Sub-chunk j of a chunk: decays from its start (after position j cs - 1) are columns of dec, which is
            # computed from differences of log-gates (no division of small decays).
            blocks = [dec[..., j * cs : (j + 1) * cs, j * cs : (j + 1) * cs] for j in range(m)]
            ddiag = torch.stack(blocks, 3)  # (G, B, H, m, cs, cs): the diagonal blocks
            # a: from the chunk start for j = 0, else dec[t, j cs - 1] = decay from after position j cs - 1 to t.
            starts = [self.decay.a[..., :cs]] + [dec[..., j * cs : (j + 1) * cs, j * cs - 1] for j in range(1, m)]
            a_sub = torch.stack(starts, 3)  # (G, B, H, m, cs)
            wl = ddiag[..., -1, :]  # decay from each position to its sub-chunk's end
            sub = Decay(
                _split_gate(a_sub), _split_gate(ddiag), _split_gate(wl), _split_gate(a_sub[..., -1])
            )
        # Start states by the chunk scan over sub-chunks, all chunks at once (the last sub-chunks' sums are not needed).
        head = slice(0, (m - 1) * G)
        wlast = None if sub.wlast is None else sub.wlast[head]
        alast = None if sub.alast is None else sub.alast[head].unflatten(0, (m - 1, G))
        hs = scan_states(state_deltas(k[head], kb[head], wlast).unflatten(0, (m - 1, G)), alast, self.h)
        return MesaSolver(self.method, hs.flatten(0, 1), k, kb, None, self.lam, sub, self.cg_tol, self.cg_max_iter)

    def _jacobi_cg(self, b: Tensor, tol: float, max_iter: int) -> tuple[Tensor, Tensor, Tensor]:
        """Jacobi-preconditioned CG (plain CG where the diagonals are nearly constant) from x = b / diag; returns x,
        the mask of systems not yet converged and each chunk's largest diagonal entry of H_t + Lambda (for
        `cg_exact`'s choice of a wider solve).
        Written for few full-size operations per iteration (it is most of the gated layer's time): buffers are
        reused, and finished systems take zero steps (alpha = 0) with a finite direction (beta = 0)."""
        minv = self._diagonals()
        peak = minv.flatten(1).amax(1)
        # Jacobi scaling changes the condition number by at most the spread of a system's diagonal: where that is
        # small it is skipped (one pass over the vectors less per iteration; the same stopping test).
        jacobi = bool((minv.amax(-1) > JACOBI_SPREAD * minv.amin(-1)).any())
        minv.reciprocal_()  # Jacobi preconditioner, > 0
        x = b * minv
        zr = torch.empty((2 if jacobi else 1, *b.shape), dtype=b.dtype, device=b.device)  # [z; r] or [r]
        z, r = zr[0], zr[-1]
        torch.sub(b, self._matvec(x), out=r)
        if jacobi:
            torch.mul(r, minv, out=z)
        p = z.clone()
        ap = torch.empty_like(p)
        if jacobi:
            rz, rr = torch.linalg.vecdot(zr, r)[..., None]
        else:
            rz = rr = torch.linalg.vecdot(r, r)[..., None]
        stop = torch.linalg.vecdot(b, b)[..., None].mul_(tol**2)
        active = rr > stop
        for _ in range(max_iter):
            if not bool(active.any()):
                break
            self.iterations += 1
            self._matvec(p, out=ap)
            # Active systems have r != 0, so rz > 0 and p^T A p > 0; the others take a zero step (where, not 0 / 0).
            alpha = torch.where(active, rz / torch.linalg.vecdot(p, ap)[..., None], 0.0)
            x.addcmul_(alpha, p)
            r.addcmul_(alpha, ap, value=-1.0)
            if jacobi:
                torch.mul(r, minv, out=z)
                rz_new, rr = torch.linalg.vecdot(zr, r)[..., None]  # = rz for finished systems (r unchanged)
            else:
                rz_new = rr = torch.linalg.vecdot(r, r)[..., None]
            beta = torch.where(active, rz_new / rz, 0.0)
            torch.addcmul(z, beta, p, out=p)
            rz = rz_new
            active = rr > stop
        return x, active, peak


def _split_chunks(x: Tensor, m: int) -> Tensor:
    """(G, B, H, C, F) -> (m G, B, H, C / m, F): each chunk cut into m sub-chunks, sub-chunk index first (so that the
    j-th sub-chunks of all chunks are one contiguous block)."""
    G, B, H, C, Fd = x.shape
    return x.reshape(G, B, H, m, C // m, Fd).permute(3, 0, 1, 2, 4, 5).reshape(m * G, B, H, C // m, Fd).contiguous()


def _merge_chunks(x: Tensor, m: int) -> Tensor:
    """Inverse of `_split_chunks`."""
    mG, B, H, cs, Fd = x.shape
    return x.reshape(m, mG // m, B, H, cs, Fd).permute(1, 2, 3, 0, 4, 5).reshape(mG // m, B, H, m * cs, Fd).contiguous()


def _split_gate(x: Tensor) -> Tensor:
    """(G, B, H, m, ...) -> (m G, B, H, ...), as `_split_chunks`."""
    return x.movedim(3, 0).flatten(0, 1)


def _identity_plus_gram(w: Tensor) -> Tensor:
    """I + w^T w for w (..., D, C)."""
    g = w.transpose(-1, -2) @ w
    g.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return g
