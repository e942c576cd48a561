"""The compiled chunked linear-attention products of the mesa layer (C++ source `linear_chunks.cpp`): the read-out
o_t = G_t x_t, and the backward outside the solves.

Kept as a Python string so that it travels wherever the Python code does (the model's remote code included);
`native.py` writes it to its build folder and compiles it. Edit it here.
"""

NAME = "linear_chunks.cpp"
SOURCE = r"""
// The chunked linear-attention products of one group of chunks of the mesa layer, fused per chunk or per (batch,
// head) for a CPU: the same arithmetic as `chunk._forward_group`'s read-out and `chunk._backward_group` outside the
// solves with the eager `chunking` functions (the reference), without their per-operation overhead and temporaries,
// and skipping the zero half of the causal (C, C) blocks. Notation of chunking.py: per chunk of C positions, a[t]
// the decay from the chunk start to t, dec[t, i] from token i to t (0 above the diagonal), wlast[i] from i to the
// chunk end, alast the whole chunk's; H_n, G_n the states at the chunk's start; x_t the solved queries, do_t the
// output gradients.
//
// mesa_read_out: per chunk, o_t = a_t G_n x_t + sum_{i <= t} dec[t, i] (k_i . x_t) vb_i.
// mesa_query_grads: per chunk, p_G[t, i] = dec[t, i] (do_t . vb_i) and r_t = a_t G_n^T do_t + sum_i p_G[t, i] k_i
// (the right-hand sides of the backward's solve).
// mesa_chunk_backward: with m_t = -dq_t (the solve's answer, negated), per (batch, head) over the group's chunks in
// reverse, carrying the gradients with respect to the states at each chunk's end (dG, dH):
//     p = dec o (m kb^T) + p_G
//     dk_t = sum_i p[i, t] x_i + wlast_t (dG^T vb_t + dH^T kb_t)        (the keys' part; the written keys' below)
//     dvb_t = sum_i dec[i, t] (x_i . k_t) do_i + wlast_t dG k_t,  dkb_t likewise with m and dH
//     dc_t = sum_i p[t, i] (x_t . k_i) + a_t x_t . (G_n^T do_t + H_n^T m_t) - k_t . dk_t   (if gated)
//     dbeta_t = dvb_t . v_t + dkb_t . k_t, then dvb, dkb times beta_t (if beta is given)
//     outputs dk + dkb, dvb; dlam += sum_t m_t o x_t; then dG <- alast dG + sum_t a_t do_t x_t^T, dH likewise.
//
// C interface (ctypes, as for jacobi_cg.cpp). Arrays contiguous, row-major, in the chunked layout (G, B, H, ...):
// item n = (g B + b) H + h; `bh` = B H; a, wlast, alast NULL when ungated (dec is then (C, C), shared); beta and v
// NULL without a write gate; dc NULL when the gates' gradient is not needed.
#include <algorithm>
#include <vector>

#include "products.h"

namespace {

template <typename T>
int read_out(long N, int threads, int C, int D, int Dv, const T* x, const T* k, const T* vb, const T* gs, const T* a,
             const T* dec, T* out) {
    if (C < 1 || D < 1 || Dv < 1 || threads < 1) return 1;
#pragma omp parallel num_threads(threads)
    {
        std::vector<T> gt(long(D) * Dv), kt(long(D) * C), s(long(C) * C);
#pragma omp for schedule(static)
        for (long n = 0; n < N; ++n) {
            const T* xn = x + n * C * D;
            const T* dn = a == nullptr ? dec : dec + n * C * C;
            T* on = out + n * C * Dv;
            transpose<T>(gs + n * Dv * D, D, Dv, D, gt.data(), Dv);
            product<T>(xn, D, gt.data(), Dv, on, Dv, C, Dv, D, false, a == nullptr ? nullptr : a + n * C);
            transpose<T>(k + n * C * D, D, C, D, kt.data(), C);
            lower_product<T>(xn, D, kt.data(), C, s.data(), C, C, D);
            for (long q = 0; q < long(C) * C; ++q) s[q] *= dn[q];
            lower_times<T>(s.data(), C, vb + n * C * Dv, Dv, on, Dv, C, Dv, true);
        }
    }
    return 0;
}

template <typename T>
int query_grads(long N, int threads, int C, int D, int Dv, const T* dout, const T* vb, const T* k, const T* gs,
                const T* a, const T* dec, T* pg, T* r) {
    if (C < 1 || D < 1 || Dv < 1 || threads < 1) return 1;
#pragma omp parallel num_threads(threads)
    {
        std::vector<T> vbt(long(Dv) * C);
#pragma omp for schedule(static)
        for (long n = 0; n < N; ++n) {
            const T* don = dout + n * C * Dv;
            const T* dn = a == nullptr ? dec : dec + n * C * C;
            T* p = pg + n * C * C;
            T* rn = r + n * C * D;
            transpose<T>(vb + n * C * Dv, Dv, C, Dv, vbt.data(), C);
            lower_product<T>(don, Dv, vbt.data(), C, p, C, C, Dv);
            for (long q = 0; q < long(C) * C; ++q) p[q] *= dn[q];
            product<T>(don, Dv, gs + n * Dv * D, D, rn, D, C, D, Dv, false, a == nullptr ? nullptr : a + n * C);
            lower_times<T>(p, C, k + n * C * D, D, rn, D, C, D, true);
        }
    }
    return 0;
}

template <typename T>
struct ChunkBackward {
    int C, D, Dv;
    std::vector<T> p, pt, qk, sqk, kt, dgt, dht, dot_t, mt, tmp, dkb, qdq, dg, dh;

    ChunkBackward(int C_, int D_, int Dv_)
        : C(C_), D(D_), Dv(Dv_), p(C_ * C_), pt(C_ * C_), qk(C_ * C_), sqk(C_ * C_), kt(long(D_) * C_),
          dgt(long(D_) * Dv_), dht(long(D_) * D_), dot_t(long(Dv_) * C_), mt(long(D_) * C_),
          tmp(long(C_) * std::max(D_, Dv_)), dkb(long(C_) * D_), qdq(C_), dg(long(Dv_) * D_), dh(long(D_) * D_) {}

    // One chunk (pointers already at its item); dg, dh hold the gradients at its end and leave with its start's.
    void run(const T* x, const T* k, const T* kb, const T* vb, const T* v, const T* beta, const T* a, const T* dec,
             const T* wlast, const T* alast, const T* hn, const T* gn, const T* dout, const T* m, const T* pg, T* dk,
             T* dv, T* dbeta, T* dc, T* dlam) {
        // p = dec o (m kb^T) + p_G, and its transpose.
        transpose<T>(kb, D, C, D, kt.data(), C);
        lower_product<T>(m, D, kt.data(), C, p.data(), C, C, D);
        for (long q = 0; q < long(C) * C; ++q) p[q] = p[q] * dec[q] + pg[q];
        transpose<T>(p.data(), C, C, C, pt.data(), C);
        // dk = p^T x + wlast o (vb dG + kb dH)
        upper_times<T>(pt.data(), C, x, D, dk, D, C, D, false);
        product<T>(vb, Dv, dg.data(), D, dk, D, C, D, Dv, true, wlast);
        product<T>(kb, D, dh.data(), D, dk, D, C, D, D, true, wlast);
        // qk[t, i] = x_t . k_i
        transpose<T>(k, D, C, D, kt.data(), C);
        lower_product<T>(x, D, kt.data(), C, qk.data(), C, C, D);
        if (dc != nullptr) {
            for (int t = 0; t < C; ++t) qdq[t] = dot(&p[t * C], &qk[t * C], C);
            product<T>(dout, Dv, gn, D, tmp.data(), D, C, D, Dv, false, a);
            for (int t = 0; t < C; ++t) qdq[t] += dot(x + t * D, &tmp[t * D], D);
            product<T>(m, D, hn, D, tmp.data(), D, C, D, D, false, a);
            for (int t = 0; t < C; ++t) {
                qdq[t] += dot(x + t * D, &tmp[t * D], D);
                dc[t] = qdq[t] - dot(k + t * D, dk + t * D, D);
            }
        }
        // sqk[i, t] = dec[t, i] (x_t . k_i); dvb = sqk do + wlast o (k dG^T), dkb = sqk m + wlast o (k dH^T)
        for (int t = 0; t < C; ++t)
            for (int i = 0; i < C; ++i) sqk[i * C + t] = dec[t * C + i] * qk[t * C + i];
        transpose<T>(dg.data(), D, Dv, D, dgt.data(), Dv);
        transpose<T>(dh.data(), D, D, D, dht.data(), D);
        upper_times<T>(sqk.data(), C, dout, Dv, dv, Dv, C, Dv, false);
        product<T>(k, D, dgt.data(), Dv, dv, Dv, C, Dv, D, true, wlast);
        upper_times<T>(sqk.data(), C, m, D, dkb.data(), D, C, D, false);
        product<T>(k, D, dht.data(), D, dkb.data(), D, C, D, D, true, wlast);
        for (int t = 0; t < C; ++t) {
            T* dvt = dv + t * Dv;
            T* dkbt = &dkb[t * D];
            if (beta != nullptr) {
                if (dbeta != nullptr) dbeta[t] = dot(dvt, v + t * Dv, Dv) + dot(dkbt, k + t * D, D);
                for (int j = 0; j < Dv; ++j) dvt[j] *= beta[t];
                for (int j = 0; j < D; ++j) dkbt[j] *= beta[t];
            }
            for (int j = 0; j < D; ++j) {
                dk[t * D + j] += dkbt[j];
                dlam[j] += m[t * D + j] * x[t * D + j];
            }
        }
        // The gradients at the chunk's start: dG <- alast dG + sum_t a_t do_t x_t^T, dH likewise with m.
        transpose<T>(dout, Dv, C, Dv, dot_t.data(), C, T(1), a);
        transpose<T>(m, D, C, D, mt.data(), C, T(1), a);
        if (alast != nullptr) {
            for (auto& e : dg) e *= *alast;
            for (auto& e : dh) e *= *alast;
        }
        product<T>(dot_t.data(), C, x, D, dg.data(), D, Dv, D, C, true);
        product<T>(mt.data(), C, x, D, dh.data(), D, D, D, C, true);
    }
};

template <typename T>
int chunk_backward(int G, long bh, int threads, int C, int D, int Dv, const T* x, const T* k, const T* kb,
                   const T* vb, const T* v, const T* beta, const T* a, const T* dec, const T* wlast, const T* alast,
                   const T* hs, const T* gs, const T* dout, const T* m, const T* pg, T* dh_io, T* dg_io, T* dk,
                   T* dv, T* dbeta, T* dc, T* dlam) {
    if (G < 1 || C < 1 || D < 1 || Dv < 1 || threads < 1) return 1;
    const long cd = long(C) * D, cv = long(C) * Dv, cc = long(C) * C;
#pragma omp parallel num_threads(threads)
    {
        ChunkBackward<T> work(C, D, Dv);
#pragma omp for schedule(static)
        for (long j = 0; j < bh; ++j) {
            std::copy(dg_io + j * Dv * D, dg_io + (j + 1) * Dv * D, work.dg.begin());
            std::copy(dh_io + j * D * D, dh_io + (j + 1) * D * D, work.dh.begin());
            for (int g = G - 1; g >= 0; --g) {
                const long n = g * bh + j;
                const bool gated = a != nullptr;
                work.run(x + n * cd, k + n * cd, kb + n * cd, vb + n * cv, v == nullptr ? nullptr : v + n * cv,
                         beta == nullptr ? nullptr : beta + n * C, gated ? a + n * C : nullptr,
                         gated ? dec + n * cc : dec, gated ? wlast + n * C : nullptr, gated ? alast + n : nullptr,
                         hs + n * D * D, gs + n * Dv * D, dout + n * cv, m + n * cd, pg + n * cc, dk + n * cd,
                         dv + n * cv, dbeta == nullptr ? nullptr : dbeta + n * C, dc == nullptr ? nullptr : dc + n * C,
                         dlam + j * D);
            }
            std::copy(work.dg.begin(), work.dg.end(), dg_io + j * Dv * D);
            std::copy(work.dh.begin(), work.dh.end(), dh_io + j * D * D);
        }
    }
    return 0;
}

}  // namespace

extern "C" {

// (N, threads, C, D, Dv, x, k, vb, gs, a, dec, out)
#define MESA_READ_OUT(SUFFIX, T)                                                                                    \
    int mesa_read_out_##SUFFIX(long N, int threads, int C, int D, int Dv, const T* x, const T* k, const T* vb,     \
                               const T* gs, const T* a, const T* dec, T* out) {                                    \
        return read_out<T>(N, threads, C, D, Dv, x, k, vb, gs, a, dec, out);                                       \
    }
MESA_READ_OUT(f32, float)
MESA_READ_OUT(f64, double)

// (N, threads, C, D, Dv, do, vb, k, gs, a, dec, pg, r)
#define MESA_QUERY_GRADS(SUFFIX, T)                                                                          \
    int mesa_query_grads_##SUFFIX(long N, int threads, int C, int D, int Dv, const T* dout, const T* vb,    \
                                  const T* k, const T* gs, const T* a, const T* dec, T* pg, T* r) {         \
        return query_grads<T>(N, threads, C, D, Dv, dout, vb, k, gs, a, dec, pg, r);                        \
    }
MESA_QUERY_GRADS(f32, float)
MESA_QUERY_GRADS(f64, double)

// (G, bh, threads, C, D, Dv, x, k, kb, vb, v, beta, a, dec, wlast, alast, hs, gs, do, m, pg, dh, dg, dk, dv, dbeta,
// dc, dlam): dh, dg in/out (bh, D, D), (bh, Dv, D); dlam (bh, D) accumulated into.
#define MESA_CHUNK_BACKWARD(SUFFIX, T)                                                                                \
    int mesa_chunk_backward_##SUFFIX(int G, long bh, int threads, int C, int D, int Dv, const T* x, const T* k,      \
                                     const T* kb, const T* vb, const T* v, const T* beta, const T* a, const T* dec,  \
                                     const T* wlast, const T* alast, const T* hs, const T* gs, const T* dout,        \
                                     const T* m, const T* pg, T* dh, T* dg, T* dk, T* dv, T* dbeta, T* dc,           \
                                     T* dlam) {                                                                      \
        return chunk_backward<T>(G, bh, threads, C, D, Dv, x, k, kb, vb, v, beta, a, dec, wlast, alast, hs, gs,      \
                                 dout, m, pg, dh, dg, dk, dv, dbeta, dc, dlam);                                      \
    }
MESA_CHUNK_BACKWARD(f32, float)
MESA_CHUNK_BACKWARD(f64, double)
}
"""
