/* Rows of a matrix-vector product straight from row-major weights: a stream's step.

   A streamed step multiplies the weights by a few input and state vectors.  The
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
/* y[b * ldy + r] (+)= sum_k w[r * ldw + k] * v[b * ldv + k] for r in [r0, r1) and  \
   the nv vectors b; overwrites unless accumulate.  Each block of four rows serves   \
   every vector while it sits in L1, so the weights are read once whatever nv. */    \
static void fastrnn_gemv_rows_##SUF(const T* w, ptrdiff_t ldw, ptrdiff_t K,            \
                                    const T* v, ptrdiff_t ldv, ptrdiff_t nv, T* y,     \
                                    ptrdiff_t ldy, ptrdiff_t r0, ptrdiff_t r1,         \
                                    int accumulate) {                                  \
    ptrdiff_t kv = K / LANES * LANES;                                                  \
    ptrdiff_t r = r0;                                                                  \
    for (; r + 4 <= r1; r += 4) {                                                      \
        const T* w0 = w + r * ldw;                                                     \
        const T* w1 = w0 + ldw;                                                        \
        const T* w2 = w1 + ldw;                                                        \
        const T* w3 = w2 + ldw;                                                        \
        for (ptrdiff_t b = 0; b < nv; b++) {                                           \
            const T* vb = v + b * ldv;                                                 \
            T* yb = y + b * ldy;                                                       \
            V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, x, c;                            \
            for (ptrdiff_t k = 0; k < kv; k += LANES) {                                \
                memcpy(&x, vb + k, sizeof(V));                                         \
                memcpy(&c, w0 + k, sizeof(V)); a0 += c * x;                            \
                memcpy(&c, w1 + k, sizeof(V)); a1 += c * x;                            \
                memcpy(&c, w2 + k, sizeof(V)); a2 += c * x;                            \
                memcpy(&c, w3 + k, sizeof(V)); a3 += c * x;                            \
            }                                                                          \
            T s0 = fastrnn_gv_sum_##SUF(a0), s1 = fastrnn_gv_sum_##SUF(a1);            \
            T s2 = fastrnn_gv_sum_##SUF(a2), s3 = fastrnn_gv_sum_##SUF(a3);            \
            for (ptrdiff_t k = kv; k < K; k++) {                                       \
                s0 += w0[k] * vb[k]; s1 += w1[k] * vb[k];                              \
                s2 += w2[k] * vb[k]; s3 += w3[k] * vb[k];                              \
            }                                                                          \
            if (accumulate) {                                                          \
                yb[r] += s0; yb[r + 1] += s1; yb[r + 2] += s2; yb[r + 3] += s3;        \
            } else {                                                                   \
                yb[r] = s0; yb[r + 1] = s1; yb[r + 2] = s2; yb[r + 3] = s3;            \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    for (; r < r1; r++) {                                                              \
        const T* w0 = w + r * ldw;                                                     \
        for (ptrdiff_t b = 0; b < nv; b++) {                                           \
            const T* vb = v + b * ldv;                                                 \
            V a0 = {0}, x, c;                                                          \
            for (ptrdiff_t k = 0; k < kv; k += LANES) {                                \
                memcpy(&x, vb + k, sizeof(V));                                         \
                memcpy(&c, w0 + k, sizeof(V)); a0 += c * x;                            \
            }                                                                          \
            T s0 = fastrnn_gv_sum_##SUF(a0);                                           \
            for (ptrdiff_t k = kv; k < K; k++) s0 += w0[k] * vb[k];                    \
            y[b * ldy + r] = accumulate ? y[b * ldy + r] + s0 : s0;                    \
        }                                                                              \
    }                                                                                  \
}

FASTRNN_DEFINE_GEMV_ROWS(f32, float, fastrnn_gv_v8f, 8)
FASTRNN_DEFINE_GEMV_ROWS(f64, double, fastrnn_gv_v4d, 4)
#endif
