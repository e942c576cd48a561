"""The compiled Cholesky-factor inverse's C++ source (`lower_inverse.cpp`).

Kept as a Python string so that it travels wherever the Python code does (the model's remote code included);
`native.py` writes it to its build folder and compiles it. Edit it here.
"""

NAME = "lower_inverse.cpp"
SOURCE = r"""
// L^{-1} for the Cholesky factor L of each matrix in a batch of small SPD matrices, fused for a CPU: the Woodbury
// solves of the mesa layer factor two such matrices per chunk, and torch runs LAPACK on one small matrix at a time
// (about 40 us each at 64 x 64 on the reference CPU, Cholesky and inverse; 20-28 us here). The eager reference is
// `triangular.lower_inverse` (Cholesky by LAPACK, blocked triangular inverse); this computes the same L^{-1}.
//
// Each matrix is converted to double, factored and inverted there, and the result rounded once: for float32 inputs
// that is more accurate than LAPACK's float32 factorisation. Blocks up to BASE are factored and inverted directly
// (`invert_small`), larger ones by the blocked recursion of `invert_blocked`. A matrix that is not positive definite
// in floating point gets NaN from the square root of its first non-positive pivot on (the eager path's result there
// is as meaningless; callers ensure Lambda > 0 and a PSD state).
//
// C interface (ctypes, native.py): m and out (N, n, n) contiguous; the N matrices on `threads` threads.
#include <cmath>
#include <cstdint>
#include <vector>

#include "products.h"

namespace {

constexpr int BASE = 32;  // blocks up to this size are factored and inverted directly, in double

// Base case, n small: L and L^{-1} of the SPD block A (leading dimension lda) into L, Li (leading dimension ld),
// with zeros above the diagonals; U, X: n x n scratch (U = L^T, X = U^{-1}, rows contiguous). Cholesky,
// right-looking: U[k, k] = sqrt(A[k, k]), U[k, j > k] = A[j, k] / U[k, k] (A's lower triangle is read, as LAPACK's
// lower Cholesky does), then the trailing rows i > k lose U[k, i] U[k, i..]; X by back substitution,
// row i = (e_i - sum_{k > i} U[i, k] X[k]) / U[i, i]; L^{-1} = X^T.
template <typename T>
void invert_small(const T* A, long lda, T* L, T* Li, long ld, int n, double* U, double* X) {
    for (int k = 0; k < n; ++k)
        for (int j = k; j < n; ++j) U[k * n + j] = A[j * lda + k];
    for (int k = 0; k < n; ++k) {
        double* uk = U + k * n;
        const double d = std::sqrt(uk[k]);
        const double inv = 1.0 / d;
        uk[k] = d;
        for (int j = k + 1; j < n; ++j) uk[j] *= inv;
        for (int i = k + 1; i < n; ++i) {
            const double f = uk[i];
            double* ui = U + i * n;
            for (int j = i; j < n; ++j) ui[j] -= f * uk[j];
        }
    }
    for (int i = n - 1; i >= 0; --i) {
        double* xi = X + i * n;
        const double* ui = U + i * n;
        for (int j = 0; j < n; ++j) xi[j] = 0.0;
        for (int k = i + 1; k < n; ++k) {
            const double f = ui[k];
            const double* xk = X + k * n;
            for (int j = k; j < n; ++j) xi[j] -= f * xk[j];
        }
        const double inv = 1.0 / ui[i];
        xi[i] = 1.0;
        for (int j = i; j < n; ++j) xi[j] *= inv;
    }
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
            L[i * ld + j] = j <= i ? T(U[j * n + i]) : T(0);
            Li[i * ld + j] = j <= i ? T(X[j * n + i]) : T(0);
        }
}

// Recursive blocked Cholesky and inverse (the blocked algorithm of LAPACK's potrf and trtri, with the products in
// register-blocked kernels): with A = [[A11, .], [A21, A22]] and h = n / 2,
//   L11 = chol(A11), L21 = A21 L11^{-T}, L22 = chol(A22 - L21 L21^T),
//   L^{-1} = [[L11^{-1}, 0], [-L22^{-1} L21 L11^{-1}, L22^{-1}]].
// A may be S's own block (the Schur complements are updated in place in S); W: scratch, n x n.
template <typename T>
void invert_blocked(const T* A, long lda, T* L, T* Li, T* S, T* W, long ld, int n, double* U, double* X) {
    if (n <= BASE) {
        invert_small<T>(A, lda, L, Li, ld, n, U, X);
        return;
    }
    const int h = n / 2, m = n - h;
    invert_blocked<T>(A, lda, L, Li, S, W, ld, h, U, X);
    T* L21 = L + h * ld;
    transpose<T>(Li, ld, h, h, W, ld, T(1));  // W = L11^{-T}
    product<T>(A + h * lda, lda, W, ld, L21, ld, m, h, h, false);  // L21 = A21 L11^{-T}
    T* S22 = S + h * ld + h;
    if (S22 != A + h * lda + h)
        for (int i = 0; i < m; ++i)
            for (int j = 0; j <= i; ++j) S22[i * ld + j] = A[(h + i) * lda + h + j];
    transpose<T>(L21, ld, m, h, W, ld, T(-1));  // W = -L21^T
    // S22 = A22 - L21 L21^T (the full block is computed; its lower half is read)
    product<T>(L21, ld, W, ld, S22, ld, m, m, h, true);
    invert_blocked<T>(S22, ld, L + h * ld + h, Li + h * ld + h, S22, W + h * ld + h, ld, m, U, X);
    product<T>(Li + h * ld + h, ld, L21, ld, W, ld, m, h, m, false);  // W = L22^{-1} L21
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < h; ++j) W[i * ld + j] = -W[i * ld + j];
    product<T>(W, ld, Li, ld, Li + h * ld, ld, m, h, h, false);  // Li21 = -L22^{-1} L21 L11^{-1}
    for (int i = 0; i < h; ++i)
        for (int j = h; j < n; ++j) Li[i * ld + j] = T(0);
}

// Every matrix is factored and inverted in double and rounded once at the end: for float32 inputs that is more
// accurate than LAPACK's float32 factorisation (and about as fast as torch's call of it at these sizes).
template <typename T>
int invert_batch(long N, int threads, int n, const T* m, T* out) {
    if (n < 1 || threads < 1) return 1;
    const long nn = long(n) * n;
#pragma omp parallel num_threads(threads)
    {
        std::vector<double> A(nn), Li(nn), L(nn), S(nn), W(nn), U(BASE * BASE), X(BASE * BASE);
#pragma omp for schedule(static)
        for (long b = 0; b < N; ++b) {
            for (long q = 0; q < nn; ++q) A[q] = double(m[b * nn + q]);
            invert_blocked<double>(A.data(), n, L.data(), Li.data(), S.data(), W.data(), n, n, U.data(), X.data());
            for (long q = 0; q < nn; ++q) out[b * nn + q] = T(Li[q]);
        }
    }
    return 0;
}

}  // namespace

extern "C" {

int mesa_lower_inverse_f32(long N, int threads, int n, const float* m, float* out) {
    return invert_batch<float>(N, threads, n, m, out);
}

int mesa_lower_inverse_f64(long N, int threads, int n, const double* m, double* out) {
    return invert_batch<double>(N, threads, n, m, out);
}
}
"""
