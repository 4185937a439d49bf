/* Rows of a matrix-vector product straight from row-major weights: a stream's step.

   A streamed step multiplies the weights by a few input and state vectors.  The
   weights stay where the layer keeps them (a stream sees in-place updates), so
   there is nothing to pack: each output is a dot product of a contiguous weight
   row with the vector.  A block of one vector's width of rows (8 in float32, 4 in
   float64) runs at once: every load of the vector serves that many FMAs, the
   block's independent accumulators hide the FMA latency and keep that many weight
   streams in flight, and one shuffle tree finishes the block's dot products into a
   vector stored in one go (fastrnn_sum_lanes8).  The product is bound by reading
   the weights (a 64 x 128 LSTM's are 393 KB), which is why a stream splits its
   rows between two cores: each reads half of them, from its own L2 cache once warm.

   Written with GCC vector extensions, as _packed_gemm.h. */
#ifndef FASTRNN_GEMV_ROWS_H
#define FASTRNN_GEMV_ROWS_H
#include <stddef.h>
#include <string.h>
#include "_vectors.h"

#define FASTRNN_DEFINE_GEMV_ROWS(SUF, T, V, LANES, SUM_LANES)                          \
/* y[b * ldy + r] = (accumulate ? y[b * ldy + r] : 0) + bias[r] (when bias is not    \
   NULL) + sum_k w[r * ldw + k] * v[b * ldv + k], for r in [r0, r1) and the nv       \
   vectors b.  Each block of rows serves every vector while it sits in L1, so the    \
   weights are read once whatever nv. */                                              \
static void fastrnn_gemv_rows_##SUF(const T* w, ptrdiff_t ldw, ptrdiff_t K,            \
                                    const T* v, ptrdiff_t ldv, ptrdiff_t nv,           \
                                    const T* bias, T* y, ptrdiff_t ldy, ptrdiff_t r0,  \
                                    ptrdiff_t r1, int accumulate) {                    \
    ptrdiff_t kv = K / LANES * LANES;                                                  \
    ptrdiff_t r = r0;                                                                  \
    for (; r + LANES <= r1; r += LANES) {                                              \
        const T* wr = w + r * ldw;                                                     \
        for (ptrdiff_t b = 0; b < nv; b++) {                                           \
            const T* vb = v + b * ldv;                                                 \
            T* yb = y + b * ldy + r;                                                   \
            V acc[LANES], x, c, s;                                                     \
            for (int e = 0; e < LANES; e++)                                            \
                acc[e] = (V){0};                                                       \
            for (ptrdiff_t k = 0; k < kv; k += LANES) {                                \
                memcpy(&x, vb + k, sizeof(V));                                         \
                for (int e = 0; e < LANES; e++) {                                      \
                    memcpy(&c, wr + e * ldw + k, sizeof(V));                           \
                    acc[e] += c * x;                                                   \
                }                                                                      \
            }                                                                          \
            s = SUM_LANES(acc);                                                        \
            for (ptrdiff_t k = kv; k < K; k++)                                         \
                for (int e = 0; e < LANES; e++)                                        \
                    s[e] += wr[e * ldw + k] * vb[k];                                   \
            if (bias != NULL) {                                                        \
                memcpy(&c, bias + r, sizeof(V));                                       \
                s += c;                                                                \
            }                                                                          \
            if (accumulate) {                                                          \
                memcpy(&c, yb, sizeof(V));                                             \
                s += c;                                                                \
            }                                                                          \
            memcpy(yb, &s, sizeof(V));                                                 \
        }                                                                              \
    }                                                                                  \
    for (; r < r1; r++) {                     /* the rows short of a whole block */     \
        const T* wr = w + r * ldw;                                                     \
        for (ptrdiff_t b = 0; b < nv; b++) {                                           \
            const T* vb = v + b * ldv;                                                 \
            /* A vector of partial sums: a scalar loop's one serial chain of adds had  \
               made a hidden size of 8k + 4 (700) cost 4 extra rows' latency a gate   \
               at every step, on one thread, with the other waiting at the barrier. */ \
            V acc = (V){0}, x, c;                                                      \
            for (ptrdiff_t k = 0; k < kv; k += LANES) {                                \
                memcpy(&x, vb + k, sizeof(V));                                         \
                memcpy(&c, wr + k, sizeof(V));                                         \
                acc += c * x;                                                          \
            }                                                                          \
            T s = 0;                                                                   \
            for (int e = 0; e < LANES; e++)                                            \
                s += acc[e];                                                           \
            for (ptrdiff_t k = kv; k < K; k++)                                         \
                s += wr[k] * vb[k];                                                    \
            if (bias != NULL)                                                          \
                s += bias[r];                                                          \
            y[b * ldy + r] = accumulate ? y[b * ldy + r] + s : s;                      \
        }                                                                              \
    }                                                                                  \
}

FASTRNN_DEFINE_GEMV_ROWS(f32, float, fastrnn_v8f, 8, fastrnn_sum_lanes8)
FASTRNN_DEFINE_GEMV_ROWS(f64, double, fastrnn_v4d, 4, fastrnn_sum_lanes4)
#endif
