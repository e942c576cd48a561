"""The compiled Jacobi-CG kernel's C++ source (`jacobi_cg.cpp`).

Kept as a Python string so that it travels wherever the Python code does (the model's remote code included);
`native.py` writes it to its build folder and compiles it. Edit it here.
"""

NAME = "jacobi_cg.cpp"
SOURCE = r"""
// Jacobi-preconditioned conjugate gradient for the gated mesa layer's per-position solves, fused for a CPU.
//
// The same systems and stopping rule as `MesaSolver._fine_jacobi_cg` in solvers.py (the eager reference):
// for every position t of a chunk, (H_t + Lambda) x_t = b_t with
//     H_t = a_t S + sum_{i <= t in the sub-chunk} dec[t, i] kb_i k_i^T,
// S the state at the start of t's sub-chunk (sub-chunks of `cs` positions; the first starts from the chunk's state,
// each next one from the previous one's end), every position its own system, stopped when
// ||r_t|| <= tol ||b_t||, from the Jacobi start x_t = b_t / diag(H_t + Lambda). Different from the eager solver:
// every system takes the Jacobi scaling, and each sub-chunk stops when its own systems have converged.
//
// What makes it faster than the eager solver on a CPU is locality and no per-operation overhead: one sub-chunk's
// state, keys and vectors (about 40 KiB at D = 64) stay in cache through all its iterations, the three products of an
// iteration run in register-blocked kernels, and the vector updates and reductions are fused loops.
//
// C interface (loaded with ctypes by native.py; no Python or torch headers, so it builds in a second or two).
// Arrays are contiguous, row-major; one call solves all N = G B H chunks on `threads` threads:
//     h      (N, D, D)   states at the chunks' starts
//     k, kb  (N, C, D)   keys and written keys (beta k)
//     a      (N, C)      decay from the chunk start to each position, or NULL when ungated
//     dec    (N, C, C)   decays dec[t, i] (0 above the diagonal); (C, C) shared by all chunks when a is NULL
//     lam    (heads, D)  diagonal of Lambda; chunk n belongs to head n % heads
//     b      (N, C, D)   right-hand sides
// Writes x (N, C, D), active (N, C) (1 where a system did not converge in max_iter iterations), peak (N,) (the
// largest diagonal entry of H_t + Lambda in the chunk) and iters (N,) (the most iterations a sub-chunk ran).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "products.h"

namespace {

// The largest of n entries, with one partial maximum per lane (as `dot` in products.h).
template <typename T>
inline T largest(const T* a, int n) {
    constexpr int W = lanes<T>();
    T part[W];
    for (int u = 0; u < W; ++u) part[u] = a[0];
    int j = 0;
    for (; j + W <= n; j += W)
        for (int u = 0; u < W; ++u) part[u] = part[u] > a[j + u] ? part[u] : a[j + u];
    T s = a[0];
    for (; j < n; ++j) s = s > a[j] ? s : a[j];
    for (int u = 0; u < W; ++u) s = s > part[u] ? s : part[u];
    return s;
}

// x += alpha p, r -= alpha ap, and (one pass) rr = r . r, rz = r . (m r) of the updated r.
template <typename T>
inline void step(T* x, T* r, const T* p, const T* ap, const T* m, T alpha, int n, T& rr, T& rz) {
    constexpr int W = lanes<T>();
    T prr[W] = {}, prz[W] = {};
    int j = 0;
    for (; j + W <= n; j += W)
        for (int u = 0; u < W; ++u) {
            x[j + u] += alpha * p[j + u];
            const T ru = r[j + u] - alpha * ap[j + u];
            r[j + u] = ru;
            prr[u] += ru * ru;
            prz[u] += ru * ru * m[j + u];
        }
    rr = 0;
    rz = 0;
    for (; j < n; ++j) {
        x[j] += alpha * p[j];
        r[j] -= alpha * ap[j];
        rr += r[j] * r[j];
        rz += r[j] * r[j] * m[j];
    }
    for (int u = 0; u < W; ++u) {
        rr += prr[u];
        rz += prz[u];
    }
}

// Whether a system iterates on: its squared residual norm rr is above `stop`. A NaN residual (a NaN anywhere in its
// matrix or right-hand side) stops it with x = NaN, as the eager solver's x becomes: the start x = b / diag can be
// finite where the matrix is not, and would otherwise pass for a solution.
template <typename T>
inline bool keep_going(T rr, T stop, T* x, int D) {
    if (rr != rr) {
        for (int j = 0; j < D; ++j) x[j] = rr;
        return false;
    }
    return rr > stop;
}

template <typename T>
struct ChunkSolver {
    int C, cs, D;
    // Scratch for one sub-chunk of up to cs positions.
    std::vector<T> state, kt, kwt, inv_diag, r, p, ap, scores, decays, starts;
    std::vector<T> rz, stop;
    std::vector<uint8_t> act;

    ChunkSolver(int C_, int cs_, int D_)
        : C(C_), cs(cs_), D(D_), state(D_ * D_), kt(D_ * cs_), kwt(D_ * cs_), inv_diag(cs_ * D_),
          r(cs_ * D_), p(cs_ * D_), ap(cs_ * D_), scores(cs_ * cs_), decays(cs_ * cs_), starts(cs_), rz(cs_),
          stop(cs_), act(cs_) {}

    // out_t = (H_t + Lambda) v_t for the sub-chunk's n positions (written keys KB; the keys are in kt).
    void matvec(const T* v, T* out, const T* KB, const T* lam, int n) {
        // a_t v_t^T S + lam * v_t (v_t^T S = (S v_t)^T: S is symmetric)
        product<T>(v, D, state.data(), D, out, D, n, D, D, false, starts.data(), lam);
        product<T>(v, D, kt.data(), n, scores.data(), n, n, n, D, false);  // [t, i] = k_i . v_t
        for (int q = 0; q < n * n; ++q) scores[q] *= decays[q];
        product<T>(scores.data(), n, KB, D, out, D, n, D, n, true);  // + sum_i dec[t, i] (k_i . v_t) kb_i
    }

    // Solves chunk n; returns the most iterations one of its sub-chunks ran.
    int solve(const T* h, const T* K, const T* KB, const T* a, const T* dec, const T* lam, const T* b, double tol,
              int max_iter, T* x, uint8_t* active, T* peak) {
        std::copy(h, h + D * D, state.begin());
        int most = 0;
        T top = 0;
        for (int s = 0; s < C; s += cs) {
            const int n = std::min(cs, C - s);
            const T* Ks = K + s * D;
            const T* KBs = KB + s * D;
            const T* bs = b + s * D;
            T* xs = x + s * D;
            // Decays within the sub-chunk, and from its start state to each position: a_t for the first sub-chunk,
            // dec[t, s - 1] (from after position s - 1) for the others.
            for (int t = 0; t < n; ++t) {
                for (int i = 0; i < n; ++i) decays[t * n + i] = dec[(s + t) * C + s + i];
                starts[t] = a == nullptr ? T(1) : (s == 0 ? a[t] : dec[(s + t) * C + s - 1]);
            }
            transpose<T>(Ks, D, n, D, kt.data(), n);
            // Diagonals of H_t + Lambda, their peak, and the Jacobi scaling.
            for (int t = 0; t < n; ++t) {
                T* m = &inv_diag[t * D];
                for (int j = 0; j < D; ++j) m[j] = starts[t] * state[j * D + j] + lam[j];
                for (int i = 0; i <= t; ++i) {
                    const T w = decays[t * n + i];
                    for (int j = 0; j < D; ++j) m[j] += w * KBs[i * D + j] * Ks[i * D + j];
                }
                top = std::max(top, largest(m, D));
                for (int j = 0; j < D; ++j) m[j] = T(1) / m[j];
            }
            // Jacobi start, first residual and search direction.
            for (int q = 0; q < n * D; ++q) xs[q] = bs[q] * inv_diag[q];
            matvec(xs, ap.data(), KBs, lam, n);
            bool any = false;
            for (int t = 0; t < n; ++t) {
                T* rt = &r[t * D];
                T* pt = &p[t * D];
                const T* mt = &inv_diag[t * D];
                for (int j = 0; j < D; ++j) {
                    rt[j] = bs[t * D + j] - ap[t * D + j];
                    pt[j] = rt[j] * mt[j];
                }
                stop[t] = dot(bs + t * D, bs + t * D, D) * T(tol * tol);
                rz[t] = dot(rt, pt, D);
                act[t] = keep_going(dot(rt, rt, D), stop[t], xs + t * D, D);
                any = any || act[t];
            }
            int it = 0;
            for (; it < max_iter && any; ++it) {
                matvec(p.data(), ap.data(), KBs, lam, n);
                any = false;
                for (int t = 0; t < n; ++t) {
                    if (!act[t]) continue;  // converged systems keep x and r (their p is no longer used)
                    T* pt = &p[t * D];
                    T* rt = &r[t * D];
                    T* xt = xs + t * D;
                    const T* apt = &ap[t * D];
                    const T* mt = &inv_diag[t * D];
                    const T alpha = rz[t] / dot(pt, apt, D);  // > 0: r_t != 0 and H_t + Lambda is SPD
                    T rr, rz_new;
                    step(xt, rt, pt, apt, mt, alpha, D, rr, rz_new);
                    const T beta = rz_new / rz[t];
                    rz[t] = rz_new;
                    for (int j = 0; j < D; ++j) pt[j] = rt[j] * mt[j] + beta * pt[j];
                    act[t] = keep_going(rr, stop[t], xt, D);
                    any = any || act[t];
                }
            }
            most = std::max(most, it);
            for (int t = 0; t < n; ++t) active[s + t] = act[t];
            if (s + n < C) {
                // The next sub-chunk's state: S <- dec[e, s - 1] S + sum_i dec[e, i] kb_i k_i^T, e its last position.
                const int e = n - 1;
                const T carry = starts[e];
                for (int q = 0; q < D * D; ++q) state[q] *= carry;
                transpose<T>(KBs, D, n, D, kwt.data(), n, T(1), &decays[e * n]);
                product<T>(kwt.data(), n, Ks, D, state.data(), D, D, D, n, true);
            }
        }
        *peak = top;
        return most;
    }
};

template <typename T>
int solve_chunks(long N, int threads, int heads, int C, int cs, int D, const T* h, const T* k, const T* kb,
                 const T* a, const T* dec, const T* lam, const T* b, double tol, int max_iter, T* x, uint8_t* active,
                 T* peak, int32_t* iters) {
    if (C < 1 || cs < 1 || D < 1 || heads < 1 || max_iter < 0 || threads < 1) return 1;
    const long cd = long(C) * D;
    // Chunks are independent: split them over `threads` OpenMP threads (torch's own pool where torch uses GNU
    // OpenMP, which this library then shares; without OpenMP the pragmas are ignored and one thread runs).
#pragma omp parallel num_threads(threads)
    {
        ChunkSolver<T> solver(C, std::min(cs, C), D);
#pragma omp for schedule(static)
        for (long n = 0; n < N; ++n) {
            const T* an = a == nullptr ? nullptr : a + n * C;
            const T* dn = a == nullptr ? dec : dec + n * long(C) * C;
            iters[n] = solver.solve(h + n * long(D) * D, k + n * cd, kb + n * cd, an, dn, lam + (n % heads) * D,
                                    b + n * cd, tol, max_iter, x + n * cd, active + n * C, peak + n);
        }
    }
    return 0;
}

}  // namespace

extern "C" {

// One entry point per dtype: (N, threads, heads, C, cs, D, h, k, kb, a, dec, lam, b, tol, max_iter, x, active, peak,
// iters), as described at the top.
#define MESA_JACOBI_CG(SUFFIX, T)                                                                                     \
    int mesa_jacobi_cg_##SUFFIX(long N, int threads, int heads, int C, int cs, int D, const T* h, const T* k,         \
                                const T* kb, const T* a, const T* dec, const T* lam, const T* b, double tol,          \
                                int max_iter, T* x, uint8_t* active, T* peak, int32_t* iters) {                       \
        return solve_chunks<T>(N, threads, heads, C, cs, D, h, k, kb, a, dec, lam, b, tol, max_iter, x, active, peak, \
                               iters);                                                                                \
    }
MESA_JACOBI_CG(f32, float)
MESA_JACOBI_CG(f64, double)

// The interface version native.py checks (of all the kernels, built together), so a stale cached build is never
// called with another signature.
int mesa_jacobi_cg_version() { return 5; }
}
"""
