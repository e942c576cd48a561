"""The register-blocked dense products shared by the compiled kernels (C++ header `products.h`).

Kept as a Python string so that it travels wherever the Python code does (the model's remote code included);
`native.py` writes it to its build folder and compiles it. Edit it here.
"""

NAME = "products.h"
SOURCE = r"""
// Register-blocked dense products for the compiled kernels (jacobi_cg.cpp, lower_inverse.cpp): small row-major
// matrices in cache, where calling a BLAS per product would cost more than the product.
#pragma once

#include <algorithm>
#include <cstring>

namespace {

// 32-byte vectors (GCC/Clang vector extensions): AVX2 registers, or two SSE registers on older x86, NEON on ARM.
template <typename T> struct VecOf { typedef T type __attribute__((vector_size(32))); };
template <typename T> using Vec = typename VecOf<T>::type;
template <typename T> constexpr int lanes() { return 32 / sizeof(T); }
template <typename T> inline Vec<T> load(const T* p) { Vec<T> v; std::memcpy(&v, p, sizeof(v)); return v; }
template <typename T> inline void store(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof(v)); }

// C[RB x NV lanes] (+)= A[RB x K] B[K x NV lanes]; the block's accumulators stay in registers. With `scale`, row r
// of A is multiplied by scale[r]; with `diag` (square products only, the block's columns j of A's row r), C starts
// from diag[j] A[r, j] instead of 0 (or C): the state product's decay and Lambda terms at no extra pass.
template <typename T, int RB, int NV>
inline void block_product(const T* A, long lda, const T* B, long ldb, T* C, long ldc, int K, bool accumulate,
                          const T* scale, const T* diag, int j0) {
    constexpr int W = lanes<T>();
    Vec<T> c[RB][NV];
    for (int r = 0; r < RB; ++r)
        for (int j = 0; j < NV; ++j) {
            if (diag != nullptr)
                c[r][j] = load(diag + j0 + j * W) * load(A + r * lda + j0 + j * W);
            else
                c[r][j] = accumulate ? load(C + r * ldc + j * W) : Vec<T>{};
        }
    for (int l = 0; l < K; ++l) {
        Vec<T> b[NV];
        for (int j = 0; j < NV; ++j) b[j] = load(B + l * ldb + j * W);
        for (int r = 0; r < RB; ++r) {
            const T a = scale != nullptr ? A[r * lda + l] * scale[r] : A[r * lda + l];
            for (int j = 0; j < NV; ++j) c[r][j] += a * b[j];
        }
    }
    for (int r = 0; r < RB; ++r)
        for (int j = 0; j < NV; ++j) store(C + r * ldc + j * W, c[r][j]);
}

// The columns [j0, ...) of C in blocks of NV vectors, RB rows at a time; returns where the blocks stopped.
template <typename T, int RB, int NV>
int column_blocks(const T* A, long lda, const T* B, long ldb, T* C, long ldc, int M, int N, int K, bool accumulate,
                  const T* scale, const T* diag, int j0) {
    constexpr int NB = NV * lanes<T>();
    for (; j0 + NB <= N; j0 += NB) {
        int i0 = 0;
        for (; i0 + RB <= M; i0 += RB)
            block_product<T, RB, NV>(A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, K, accumulate,
                                     scale == nullptr ? nullptr : scale + i0, diag, j0);
        for (; i0 < M; ++i0)
            block_product<T, 1, NV>(A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, K, accumulate,
                                    scale == nullptr ? nullptr : scale + i0, diag, j0);
    }
    return j0;
}

// C (M x N) (+)= A (M x K) B (K x N), row-major with leading dimensions lda, ldb, ldc: the widest column blocks
// first, then narrower ones, then single columns. `scale` and `diag` as for block_product (diag needs K == N).
template <typename T>
void product(const T* A, long lda, const T* B, long ldb, T* C, long ldc, int M, int N, int K, bool accumulate,
             const T* scale = nullptr, const T* diag = nullptr) {
    int j0 = column_blocks<T, 2, 8>(A, lda, B, ldb, C, ldc, M, N, K, accumulate, scale, diag, 0);
    j0 = column_blocks<T, 4, 4>(A, lda, B, ldb, C, ldc, M, N, K, accumulate, scale, diag, j0);
    j0 = column_blocks<T, 8, 2>(A, lda, B, ldb, C, ldc, M, N, K, accumulate, scale, diag, j0);
    j0 = column_blocks<T, 8, 1>(A, lda, B, ldb, C, ldc, M, N, K, accumulate, scale, diag, j0);
    for (; j0 < N; ++j0)
        for (int i = 0; i < M; ++i) {
            T s = diag != nullptr ? diag[j0] * A[i * lda + j0] : (accumulate ? C[i * ldc + j0] : T(0));
            for (int l = 0; l < K; ++l) {
                const T a = scale != nullptr ? A[i * lda + l] * scale[i] : A[i * lda + l];
                s += a * B[l * ldb + j0];
            }
            C[i * ldc + j0] = s;
        }
}

// a . b over n entries, with one partial sum per lane so that the compiler vectorises it (a single running sum would
// be a chain of dependent scalar additions).
template <typename T>
inline T dot(const T* a, const T* b, int n) {
    constexpr int W = lanes<T>();
    T part[W] = {};
    int j = 0;
    for (; j + W <= n; j += W)
        for (int u = 0; u < W; ++u) part[u] += a[j + u] * b[j + u];
    T s = 0;
    for (; j < n; ++j) s += a[j] * b[j];
    for (int u = 0; u < W; ++u) s += part[u];
    return s;
}

// W (cols x rows, leading dimension ldw) = factor * M^T for M (rows x cols, leading dimension ldm), each row i of M
// also times row_scale[i] if given.
template <typename T>
inline void transpose(const T* M, long ldm, int rows, int cols, T* W, long ldw, T factor = T(1),
                      const T* row_scale = nullptr) {
    for (int i = 0; i < rows; ++i) {
        const T s = row_scale == nullptr ? factor : factor * row_scale[i];
        for (int j = 0; j < cols; ++j) W[j * ldw + i] = s * M[i * ldm + j];
    }
}

// Products with the (n x n) score matrices of a chunk, which are triangular (causal), by row blocks of TRI_ROWS so
// that the zero half is skipped (about 44% of the work at n = 64).
constexpr int TRI_ROWS = 8;

// C (n x N) (+)= L B for L (n x n) lower triangular (only its lower triangle, by row blocks, is read).
template <typename T>
void lower_times(const T* L, long ldl, const T* B, long ldb, T* C, long ldc, int n, int N, bool accumulate) {
    for (int i0 = 0; i0 < n; i0 += TRI_ROWS) {
        const int rows = std::min(TRI_ROWS, n - i0);
        product<T>(L + i0 * ldl, ldl, B, ldb, C + i0 * ldc, ldc, rows, N, i0 + rows, accumulate);
    }
}

// C (n x N) (+)= U B for U (n x n) upper triangular (only its upper triangle, by row blocks, is read).
template <typename T>
void upper_times(const T* U, long ldu, const T* B, long ldb, T* C, long ldc, int n, int N, bool accumulate) {
    for (int i0 = 0; i0 < n; i0 += TRI_ROWS) {
        const int rows = std::min(TRI_ROWS, n - i0);
        product<T>(U + i0 * ldu + i0, ldu, B + i0 * ldb, ldb, C + i0 * ldc, ldc, rows, N, n - i0, accumulate);
    }
}

// The lower triangle of C (n x n) = A (n x K) B (K x n), by row blocks: entries right of a row block's diagonal
// block are set to 0, those inside it above the diagonal are computed (callers mask them).
template <typename T>
void lower_product(const T* A, long lda, const T* B, long ldb, T* C, long ldc, int n, int K) {
    for (int i0 = 0; i0 < n; i0 += TRI_ROWS) {
        const int rows = std::min(TRI_ROWS, n - i0);
        product<T>(A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, rows, i0 + rows, K, false);
        for (int i = i0; i < i0 + rows; ++i)
            for (int j = i0 + rows; j < n; ++j) C[i * ldc + j] = T(0);
    }
}

}  // namespace
"""
