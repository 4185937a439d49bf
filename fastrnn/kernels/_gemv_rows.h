/* Rows of a matrix-vector product straight from row-major weights: a stream's step.

   A streamed step multiplies the weights by one input and one state vector.  The
   weights stay where the layer keeps them (a stream sees in-place updates), so
   there is nothing to pack: each output is a dot product of a contiguous weight
   row with the vector, four rows at a time so that every load of the vector
   serves four FMAs.  The product is bound by reading the weights (a 64 x 128
   LSTM's are 393 KB), which is why a stream splits its rows between two cores:
   each reads half of them, from its own L2 cache once warm.

   Written with GCC vector extensions, as _packed_gemm.h. */
#ifndef FASTRNN_GEMV_ROWS_H
#define FASTRNN_GEMV_ROWS_H
#include <stddef.h>
#include <string.h>

typedef float fastrnn_gv_v8f __attribute__((vector_size(32)));
typedef double fastrnn_gv_v4d __attribute__((vector_size(32)));

#define FASTRNN_DEFINE_GEMV_ROWS(SUF, T, V, LANES)                                     \
static inline T fastrnn_gv_sum_##SUF(V a) {                                            \
    T s = 0;                                                                           \
    for (int e = 0; e < LANES; e++) s += a[e];                                         \
    return s;                                                                          \
}                                                                                      \
/* y[r] (+)= sum_k w[r * ldw + k] * v[k] for r in [r0, r1); overwrites y[r] unless    \
   accumulate. */                                                                      \
static void fastrnn_gemv_rows_##SUF(const T* w, ptrdiff_t ldw, ptrdiff_t K,            \
                                    const T* v, T* y, ptrdiff_t r0, ptrdiff_t r1,      \
                                    int accumulate) {                                  \
    ptrdiff_t kv = K / LANES * LANES;                                                  \
    ptrdiff_t r = r0;                                                                  \
    for (; r + 4 <= r1; r += 4) {                                                      \
        const T* w0 = w + r * ldw;                                                     \
        const T* w1 = w0 + ldw;                                                        \
        const T* w2 = w1 + ldw;                                                        \
        const T* w3 = w2 + ldw;                                                        \
        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, x, b;                                \
        for (ptrdiff_t k = 0; k < kv; k += LANES) {                                    \
            memcpy(&x, v + k, sizeof(V));                                              \
            memcpy(&b, w0 + k, sizeof(V)); a0 += b * x;                                \
            memcpy(&b, w1 + k, sizeof(V)); a1 += b * x;                                \
            memcpy(&b, w2 + k, sizeof(V)); a2 += b * x;                                \
            memcpy(&b, w3 + k, sizeof(V)); a3 += b * x;                                \
        }                                                                              \
        T s0 = fastrnn_gv_sum_##SUF(a0), s1 = fastrnn_gv_sum_##SUF(a1);                \
        T s2 = fastrnn_gv_sum_##SUF(a2), s3 = fastrnn_gv_sum_##SUF(a3);                \
        for (ptrdiff_t k = kv; k < K; k++) {                                           \
            s0 += w0[k] * v[k]; s1 += w1[k] * v[k];                                    \
            s2 += w2[k] * v[k]; s3 += w3[k] * v[k];                                    \
        }                                                                              \
        if (accumulate) {                                                              \
            y[r] += s0; y[r + 1] += s1; y[r + 2] += s2; y[r + 3] += s3;                \
        } else {                                                                       \
            y[r] = s0; y[r + 1] = s1; y[r + 2] = s2; y[r + 3] = s3;                    \
        }                                                                              \
    }                                                                                  \
    for (; r < r1; r++) {                                                              \
        const T* w0 = w + r * ldw;                                                     \
        V a0 = {0}, x, b;                                                              \
        for (ptrdiff_t k = 0; k < kv; k += LANES) {                                    \
            memcpy(&x, v + k, sizeof(V));                                              \
            memcpy(&b, w0 + k, sizeof(V)); a0 += b * x;                                \
        }                                                                              \
        T s0 = fastrnn_gv_sum_##SUF(a0);                                               \
        for (ptrdiff_t k = kv; k < K; k++) s0 += w0[k] * v[k];                         \
        y[r] = accumulate ? y[r] + s0 : s0;                                            \
    }                                                                                  \
}

FASTRNN_DEFINE_GEMV_ROWS(f32, float, fastrnn_gv_v8f, 8)
FASTRNN_DEFINE_GEMV_ROWS(f64, double, fastrnn_gv_v4d, 4)
#endif
