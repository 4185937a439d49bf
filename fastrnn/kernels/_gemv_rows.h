/* Rows of a matrix-vector product straight from row-major weights: a batch-1 step.

   A step at batch 1 (and a streamed step) multiplies the weights by a few input and
   state vectors.  The weights stay where the layer keeps them (a stream sees
   in-place updates), so there is nothing to pack: each output is a dot product of
   a contiguous weight row with the vector.  The product is bound by reading the
   weights (a 128-unit LSTM's W_hh is 256 KB, a 512-unit one's 4 MB), which is why a
   step splits its rows between the cores.

   One vector (a step at batch 1) and rows of at least FASTRNN_ROW_WALK_MIN_K
   elements: the rows are read one after another, each to its end before the next,
   so that a thread's share is one sequential stream, prefetched
   FASTRNN_GEMV_PREFETCH bytes ahead, with four accumulators of a full vector
   (AVX-512: 16 lanes) to cover the FMA latency.  Walking 8 rows side by side
   instead keeps 8 streams 1-4 KB apart in flight, which the hardware prefetchers
   serve worse.  Measured in one process, the two builds alternating (T = 50, two
   threads, batch 1, 2026-11-27): LSTM inference 0.84-0.89x the time at hidden 512,
   0.83x at 640, 0.77x at 700 (input 100), 0.82-0.93x at 768, 0.80x at 1024 with
   input 256 and 0.85-1.04x with input 1024 (its 16 MB W_ih shares L3 with W_hh;
   prefetching 2 KB ahead had taken 1.14x there), 0.87-0.95x at 192-256; the GRU
   0.91x at 256-512, 0.77x at 700, 0.80x at 1024; the Elman RNN 0.84-0.88x at
   512-1024.  Shorter rows, and several vectors (a stream's batch, compute-bound:
   row after row reloads the vector for every row, LSTM(512) streamed at batch 8
   took 1.1-1.2x the time), walk 8 rows side by side, each load of the vector
   serving 8 FMAs; hidden 128 even either way.

   Either walk finishes a block of 8 rows (4 in float64) with one shuffle tree into
   a vector stored in one go (fastrnn_sum_lanes8).  A row's last K % lanes elements
   load masked where the ISA has masked loads, one more vector, not a scalar loop.

   Written with GCC vector extensions, as _packed_gemm.h. */
#ifndef FASTRNN_GEMV_ROWS_H
#define FASTRNN_GEMV_ROWS_H
#include <stddef.h>
#include <string.h>
#include "_vectors.h"
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define FASTRNN_ROW_WALK_MIN_K 192
#define FASTRNN_GEMV_PREFETCH 4096
/* The row walk is never inlined: inlined into a layer's time loop, its code made GCC
   allocate the loop's registers worse (LSTM(128) at batch 1, which does not even run
   it, took 1.2x the time; the side walk stays inlined, as it was). */
#if defined(__GNUC__)
#define FASTRNN_GEMV_ATTR static __attribute__((noinline))
#else
#define FASTRNN_GEMV_ATTR static
#endif

/* A full vector of weights (the dot products' width) and the tree's half of it. */
#if defined(__AVX512F__)
typedef float fastrnn_dot_f32 __attribute__((vector_size(64)));
typedef double fastrnn_dot_f64 __attribute__((vector_size(64)));
#else
typedef fastrnn_v8f fastrnn_dot_f32;
typedef fastrnn_v4d fastrnn_dot_f64;
#endif
#define FASTRNN_DOT_LANES_f32 ((ptrdiff_t)(sizeof(fastrnn_dot_f32) / sizeof(float)))
#define FASTRNN_DOT_LANES_f64 ((ptrdiff_t)(sizeof(fastrnn_dot_f64) / sizeof(double)))

/* The first n (< lanes) elements at p, the other lanes zero: one masked load where the
   ISA has one, else element by element. */
#define FASTRNN_DOT_FROM(SUF, v)                                                        \
    do {                                                                                \
        fastrnn_dot_##SUF r_;                                                           \
        memcpy(&r_, &(v), sizeof(r_));                                                  \
        return r_;                                                                      \
    } while (0)
#define FASTRNN_DOT_ELEMENTS(SUF)                                                       \
    do {                                                                                \
        fastrnn_dot_##SUF r_ = {0};                                                     \
        for (ptrdiff_t e = 0; e < n; e++)                                               \
            r_[e] = p[e];                                                               \
        return r_;                                                                      \
    } while (0)
static inline fastrnn_dot_f32 fastrnn_dot_tail_f32(const float* p, ptrdiff_t n) {
#if defined(__AVX512F__)
    __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
    FASTRNN_DOT_FROM(f32, v);
#elif defined(__AVX2__)
    static const int ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                                      _mm256_loadu_si256((const __m256i*)ramp));
    __m256 v = _mm256_maskload_ps(p, mask);
    FASTRNN_DOT_FROM(f32, v);
#else
    FASTRNN_DOT_ELEMENTS(f32);
#endif
}
static inline fastrnn_dot_f64 fastrnn_dot_tail_f64(const double* p, ptrdiff_t n) {
#if defined(__AVX512F__)
    __m512d v = _mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1u), p);
    FASTRNN_DOT_FROM(f64, v);
#else
    FASTRNN_DOT_ELEMENTS(f64);
#endif
}

/* A full vector's lanes summed in pairs down to the tree's width (in registers: a
   64-byte store read back as two halves would stall the store forwarding). */
static inline fastrnn_v8f fastrnn_dot_fold_f32(fastrnn_dot_f32 a) {
#if defined(__AVX512F__)
    __m512 v;
    memcpy(&v, &a, sizeof(v));
    __m256 r = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(
        _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    fastrnn_v8f out;
    memcpy(&out, &r, sizeof(out));
    return out;
#else
    return a;
#endif
}
static inline fastrnn_v4d fastrnn_dot_fold_f64(fastrnn_dot_f64 a) {
#if defined(__AVX512F__)
    __m512d v;
    memcpy(&v, &a, sizeof(v));
    __m256d r = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    fastrnn_v4d out;
    memcpy(&out, &r, sizeof(out));
    return out;
#else
    return a;
#endif
}

/* The dot product of a row with a vector, its partial sums folded to HV. */
#define FASTRNN_DEFINE_ROW_DOT(SUF, T, HV)                                              \
static inline HV fastrnn_row_dot_##SUF(const T* w, const T* v, ptrdiff_t K) {          \
    const ptrdiff_t L = FASTRNN_DOT_LANES_##SUF;                                        \
    fastrnn_dot_##SUF a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, x, c;                     \
    ptrdiff_t k = 0;                                                                    \
    for (; k + 4 * L <= K; k += 4 * L) {                                                \
        for (int q = 0; q < 4 * L * (int)sizeof(T); q += 64)  /* each line ahead */     \
            __builtin_prefetch((const char*)(w + k) + FASTRNN_GEMV_PREFETCH + q, 0, 3); \
        memcpy(&c, w + k, sizeof(c)); memcpy(&x, v + k, sizeof(x)); a0 += c * x;        \
        memcpy(&c, w + k + L, sizeof(c)); memcpy(&x, v + k + L, sizeof(x)); a1 += c * x;\
        memcpy(&c, w + k + 2 * L, sizeof(c));                                           \
        memcpy(&x, v + k + 2 * L, sizeof(x));                                           \
        a2 += c * x;                                                                    \
        memcpy(&c, w + k + 3 * L, sizeof(c));                                           \
        memcpy(&x, v + k + 3 * L, sizeof(x));                                           \
        a3 += c * x;                                                                    \
    }                                                                                   \
    for (; k + L <= K; k += L) {                                                        \
        memcpy(&c, w + k, sizeof(c)); memcpy(&x, v + k, sizeof(x)); a0 += c * x;        \
    }                                                                                   \
    if (k < K)                                                                          \
        a1 += fastrnn_dot_tail_##SUF(w + k, K - k) * fastrnn_dot_tail_##SUF(v + k, K - k);\
    return fastrnn_dot_fold_##SUF((a0 + a1) + (a2 + a3));                               \
}
FASTRNN_DEFINE_ROW_DOT(f32, float, fastrnn_v8f)
FASTRNN_DEFINE_ROW_DOT(f64, double, fastrnn_v4d)

/* A block's n (<= ROWS) sums s to yb[e] (plus bias[r + e] when not NULL, plus what yb
   held with accumulate): a full block in one vector. */
#define FASTRNN_DEFINE_GEMV_STORE(SUF, T, HV, ROWS)                                     \
static inline void fastrnn_gemv_store_##SUF(HV s, int n, const T* bias, ptrdiff_t r,   \
                                            T* yb, int accumulate) {                   \
    HV c;                                                                              \
    if (n < ROWS) {                                                                    \
        for (int e = 0; e < n; e++) {                                                  \
            T o = s[e];                                                                \
            if (bias != NULL)                                                          \
                o += bias[r + e];                                                      \
            yb[e] = accumulate ? yb[e] + o : o;                                        \
        }                                                                              \
        return;                                                                        \
    }                                                                                  \
    if (bias != NULL) {                                                                \
        memcpy(&c, bias + r, sizeof(HV));                                              \
        s += c;                                                                        \
    }                                                                                  \
    if (accumulate) {                                                                  \
        memcpy(&c, yb, sizeof(HV));                                                    \
        s += c;                                                                        \
    }                                                                                  \
    memcpy(yb, &s, sizeof(HV));                                                        \
}
FASTRNN_DEFINE_GEMV_STORE(f32, float, fastrnn_v8f, 8)
FASTRNN_DEFINE_GEMV_STORE(f64, double, fastrnn_v4d, 4)

#define FASTRNN_DEFINE_GEMV_ROWS(SUF, T, HV, ROWS, SUM_LANES)                           \
/* The rows walked one after another (K >= FASTRNN_ROW_WALK_MIN_K). */                \
FASTRNN_GEMV_ATTR void fastrnn_gemv_row_walk_##SUF(                                    \
        const T* w, ptrdiff_t ldw, ptrdiff_t K, const T* v, ptrdiff_t ldv, ptrdiff_t nv, \
        const T* bias, T* y, ptrdiff_t ldy, ptrdiff_t r0, ptrdiff_t r1, int accumulate) { \
    for (ptrdiff_t r = r0; r < r1; r += ROWS) {                                        \
        int n = r1 - r < ROWS ? (int)(r1 - r) : ROWS;                                  \
        for (ptrdiff_t b = 0; b < nv; b++) {                                           \
            HV part[ROWS], s;                                                          \
            for (int e = 0; e < ROWS; e++)                                             \
                part[e] = e < n ? fastrnn_row_dot_##SUF(w + (r + e) * ldw, v + b * ldv, K) \
                                : (HV){0};                                             \
            s = SUM_LANES(part);                                                       \
            fastrnn_gemv_store_##SUF(s, n, bias, r, y + b * ldy + r, accumulate);      \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* y[b * ldy + r] = (accumulate ? y[b * ldy + r] : 0) + bias[r] (when bias is not    \
   NULL) + sum_k w[r * ldw + k] * v[b * ldv + k], for r in [r0, r1) and the nv       \
   vectors b.  Each block of rows serves every vector while it sits in L1, so the    \
   weights are read once whatever nv.  Short rows: ROWS rows side by side, each     \
   load of the vector serving ROWS FMAs. */                                           \
static void fastrnn_gemv_rows_##SUF(const T* w, ptrdiff_t ldw, ptrdiff_t K,            \
                                    const T* v, ptrdiff_t ldv, ptrdiff_t nv,           \
                                    const T* bias, T* y, ptrdiff_t ldy, ptrdiff_t r0,  \
                                    ptrdiff_t r1, int accumulate) {                    \
    if (K >= FASTRNN_ROW_WALK_MIN_K && nv == 1) {                                      \
        fastrnn_gemv_row_walk_##SUF(w, ldw, K, v, ldv, nv, bias, y, ldy, r0, r1,       \
                                    accumulate);                                       \
        return;                                                                        \
    }                                                                                  \
    ptrdiff_t kv = K / ROWS * ROWS;                                                    \
    ptrdiff_t r = r0;                                                                  \
    for (; r + ROWS <= r1; r += ROWS) {                                                \
        const T* wr = w + r * ldw;                                                     \
        for (ptrdiff_t b = 0; b < nv; b++) {                                           \
            const T* vb = v + b * ldv;                                                 \
            T* yb = y + b * ldy + r;                                                   \
            HV acc[ROWS], x, c, s;                                                     \
            for (int e = 0; e < ROWS; e++)                                             \
                acc[e] = (HV){0};                                                      \
            for (ptrdiff_t k = 0; k < kv; k += ROWS) {                                 \
                memcpy(&x, vb + k, sizeof(HV));                                        \
                for (int e = 0; e < ROWS; e++) {                                       \
                    memcpy(&c, wr + e * ldw + k, sizeof(HV));                          \
                    acc[e] += c * x;                                                   \
                }                                                                      \
            }                                                                          \
            s = SUM_LANES(acc);                                                        \
            for (ptrdiff_t k = kv; k < K; k++)                                         \
                for (int e = 0; e < ROWS; e++)                                         \
                    s[e] += wr[e * ldw + k] * vb[k];                                   \
            fastrnn_gemv_store_##SUF(s, ROWS, bias, r, yb, accumulate);                \
        }                                                                              \
    }                                                                                  \
    for (; r < r1; r++) {                     /* the rows short of a whole block */     \
        const T* wr = w + r * ldw;                                                     \
        for (ptrdiff_t b = 0; b < nv; b++) {                                           \
            const T* vb = v + b * ldv;                                                 \
            /* A vector of partial sums: a scalar loop's one serial chain of adds had  \
               made a hidden size of 8k + 4 (700) cost 4 extra rows' latency a gate   \
               at every step, on one thread, with the other waiting at the barrier. */ \
            HV acc = (HV){0}, x, c;                                                    \
            for (ptrdiff_t k = 0; k < kv; k += ROWS) {                                 \
                memcpy(&x, vb + k, sizeof(HV));                                        \
                memcpy(&c, wr + k, sizeof(HV));                                        \
                acc += c * x;                                                          \
            }                                                                          \
            T s = 0;                                                                   \
            for (int e = 0; e < ROWS; e++)                                             \
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
