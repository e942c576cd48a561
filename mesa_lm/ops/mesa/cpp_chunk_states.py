"""The compiled chunk decays and chunk-boundary states of one group (C++ source `chunk_states.cpp`).

Kept as a Python string so that it travels wherever the Python code does (the model's remote code included);
`native.py` writes it to its build folder and compiles it. Edit it here.
"""

NAME = "chunk_states.cpp"
SOURCE = r"""
// What `chunk._Group` computes from a group of chunks with eager torch (the reference), fused per (batch, head) for a
// CPU: the decays of each chunk (`chunking.Decay.make`), the written keys and values kb = beta k, vb = beta v, and
// the states at the chunk boundaries by the scan over the group's chunks (`chunking.scan_states` of
// `chunking.state_deltas`):
//     c_t = sum_{s <= t} log max(gamma_s, tiny)   (accumulated in double, as torch's CPU cumsum does)
//     a[t] = exp(c_t), dec[t, i] = exp(c_t - c_i) for i <= t (0 above), wlast[i] = exp(c_{C-1} - c_i),
//     alast = exp(c_{C-1})
//     H_{n+1} = alast_n H_n + sum_i wlast[i] kb_i k_i^T,  G_{n+1} = alast_n G_n + sum_i wlast[i] vb_i k_i^T
//
// C interface (ctypes, as for jacobi_cg.cpp). Arrays contiguous, row-major, chunked (G, B, H, ...), item
// n = (g B + b) H + h, bh = B H: k (G, B, H, C, D), v (G, B, H, C, Dv), gamma and beta (G, B, H, C) (NULL: 1; then
// the decays, or kb and vb, are not written), h0 (bh, D, D), g0 (bh, Dv, D). Writes kb, vb, a, dec (G, B, H, C, C),
// wlast, alast (G, B, H), hs (G + 1, B, H, D, D), gs (G + 1, B, H, Dv, D).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "products.h"

namespace {

// exp of a vector of floats or doubles, as vector arithmetic (std::exp is a scalar call, and the decays need C^2 of
// them per chunk): x = n ln 2 + r with |r| <= ln 2 / 2, exp(r) by its Taylor polynomial (degree 7 for float, 13 for
// double: truncation below 0.1 ulp), times 2^n built in the exponent bits (as two factors, so that results down to
// the subnormals and up to overflow come out right). NaN stays NaN.
template <typename T> struct ExpTraits;
template <> struct ExpTraits<float> {
    typedef int32_t Int __attribute__((vector_size(32)));
    static constexpr int degree = 7, mantissa = 23, bias = 127;
    static constexpr float lo = -104.0f, hi = 89.0f, round = 12582912.0f;  // 1.5 2^23
    static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
};
template <> struct ExpTraits<double> {
    typedef int64_t Int __attribute__((vector_size(32)));
    static constexpr int degree = 13, mantissa = 52, bias = 1023;
    static constexpr double lo = -746.0, hi = 710.0, round = 6755399441055744.0;  // 1.5 2^52
    static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
};

template <typename T>
inline Vec<T> vexp(Vec<T> x) {
    using E = ExpTraits<T>;
    using Int = typename E::Int;
    x = x < E::lo ? E::lo : x;
    x = x > E::hi ? E::hi : x;
    const Vec<T> n = (x * T(1.4426950408889634) + E::round) - E::round;  // nearest integer to x / ln 2
    const Vec<T> r = (x - n * E::ln2_hi) - n * E::ln2_lo;
    T inv_fact[E::degree + 1];
    inv_fact[0] = 1;
    for (int i = 1; i <= E::degree; ++i) inv_fact[i] = inv_fact[i - 1] / T(i);
    Vec<T> p = Vec<T>{} + inv_fact[E::degree];
    for (int i = E::degree - 1; i >= 0; --i) p = p * r + inv_fact[i];
    const Int ni = __builtin_convertvector(n, Int);
    const Int n1 = ni >> 1, n2 = ni - n1;
    const Int b1 = (n1 + E::bias) << E::mantissa, b2 = (n2 + E::bias) << E::mantissa;
    Vec<T> s1, s2;
    std::memcpy(&s1, &b1, sizeof(s1));
    std::memcpy(&s2, &b2, sizeof(s2));
    return p * s1 * s2;
}

// y[i] = exp(x[i]) for i < n.
template <typename T>
inline void exp_into(const T* x, T* y, int n) {
    constexpr int W = lanes<T>();
    int i = 0;
    for (; i + W <= n; i += W) store(y + i, vexp<T>(load(x + i)));
    if (i < n) {
        T buf[W] = {};
        for (int j = i; j < n; ++j) buf[j - i] = x[j];
        store(buf, vexp<T>(load(buf)));
        for (int j = i; j < n; ++j) y[j] = buf[j - i];
    }
}

template <typename T>
int chunk_states(int G, long bh, int threads, int C, int D, int Dv, const T* k, const T* v, const T* gamma,
                 const T* beta, const T* h0, const T* g0, T* kb, T* vb, T* a, T* dec, T* wlast, T* alast, T* hs,
                 T* gs) {
    if (G < 1 || C < 1 || D < 1 || Dv < 1 || threads < 1) return 1;
    const long cd = long(C) * D, cv = long(C) * Dv, cc = long(C) * C, dd = long(D) * D, vd = long(Dv) * D;
    const T tiny = std::numeric_limits<T>::min();
#pragma omp parallel num_threads(threads)
    {
        std::vector<T> cum(C), wt(long(std::max(D, Dv)) * C);
#pragma omp for schedule(static)
        for (long j = 0; j < bh; ++j) {
            std::copy(h0 + j * dd, h0 + (j + 1) * dd, hs + j * dd);
            std::copy(g0 + j * vd, g0 + (j + 1) * vd, gs + j * vd);
            for (int g = 0; g < G; ++g) {
                const long n = g * bh + j;
                T* wn = nullptr;  // NULL: every weight is 1 (ungated)
                T carry = 1;
                if (gamma != nullptr) {
                    const T* gm = gamma + n * C;
                    double run = 0;
                    for (int t = 0; t < C; ++t) {
                        run += double(std::log(std::max(gm[t], tiny)));
                        cum[t] = T(run);
                    }
                    T* an = a + n * C;
                    T* dn = dec + n * cc;
                    wn = wlast + n * C;
                    const T last = cum[C - 1];
                    exp_into(cum.data(), an, C);
                    for (int t = 0; t < C; ++t) wn[t] = last - cum[t];
                    exp_into(wn, wn, C);
                    for (int t = 0; t < C; ++t) {
                        for (int i = 0; i <= t; ++i) dn[t * C + i] = cum[t] - cum[i];
                        exp_into(dn + t * C, dn + t * C, t + 1);
                        for (int i = t + 1; i < C; ++i) dn[t * C + i] = T(0);
                    }
                    alast[n] = carry = an[C - 1];
                }
                const T* kn = k + n * cd;
                const T* vn = v + n * cv;
                const T* kbn = kn;
                const T* vbn = vn;
                if (beta != nullptr) {
                    const T* bn = beta + n * C;
                    for (int t = 0; t < C; ++t) {
                        for (int l = 0; l < D; ++l) kb[n * cd + t * D + l] = bn[t] * kn[t * D + l];
                        for (int l = 0; l < Dv; ++l) vb[n * cv + t * Dv + l] = bn[t] * vn[t * Dv + l];
                    }
                    kbn = kb + n * cd;
                    vbn = vb + n * cv;
                }
                // The next boundary's states: alast times this one's, plus (wlast o written)^T k.
                const T* hn = hs + n * dd;
                const T* gsn = gs + n * vd;
                T* hnext = hs + (n + bh) * dd;
                T* gnext = gs + (n + bh) * vd;
                for (long q = 0; q < dd; ++q) hnext[q] = carry * hn[q];
                for (long q = 0; q < vd; ++q) gnext[q] = carry * gsn[q];
                transpose<T>(kbn, D, C, D, wt.data(), C, T(1), wn);
                product<T>(wt.data(), C, kn, D, hnext, D, D, D, C, true);
                transpose<T>(vbn, Dv, C, Dv, wt.data(), C, T(1), wn);
                product<T>(wt.data(), C, kn, D, gnext, D, Dv, D, C, true);
            }
        }
    }
    return 0;
}

}  // namespace

extern "C" {

// (G, bh, threads, C, D, Dv, k, v, gamma, beta, h0, g0, kb, vb, a, dec, wlast, alast, hs, gs), as described above.
#define MESA_CHUNK_STATES(SUFFIX, T)                                                                                  \
    int mesa_chunk_states_##SUFFIX(int G, long bh, int threads, int C, int D, int Dv, const T* k, const T* v,        \
                                   const T* gamma, const T* beta, const T* h0, const T* g0, T* kb, T* vb, T* a,      \
                                   T* dec, T* wlast, T* alast, T* hs, T* gs) {                                       \
        return chunk_states<T>(G, bh, threads, C, D, Dv, k, v, gamma, beta, h0, g0, kb, vb, a, dec, wlast, alast, hs, \
                               gs);                                                                                   \
    }
MESA_CHUNK_STATES(f32, float)
MESA_CHUNK_STATES(f64, double)
}
"""
