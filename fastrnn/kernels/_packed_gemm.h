/* The recurrent GEMM of a step on weights packed once per call.

   Every step multiplies the same weight matrix by a handful of state rows.
   A BLAS call re-packs the weight operand on each call (OpenBLAS spent a fifth
   of an LSTM's time there) and is tuned for large M.  Here the caller packs its
   own columns of the weights once per kernel call, the way ONNX Runtime's
   MlasGemmPackB does, and each step runs a register-tiled micro-kernel over
   them.

   Columns.  A thread owns units [j0, j1) of each of n_gates blocks of H
   columns: the column set {g * H + u : g < n_gates, j0 <= u < j1}, the same
   column indices in the weights' B(k, col) and in C.  j0 is a multiple of
   FASTRNN_GROUP (split_units guarantees it).

   Packed layout.  The column set is cut into groups of G = FASTRNN_GROUP_f32 or
   _f64 columns: first each gate's whole groups, gate after gate, then the last
   r = (j1 - j0) % G units of every gate side by side, the gates' tails sharing
   as few groups as they fill (the last one padded with zeros); group q holds
   B(k, column of lane e) at packed[(q * K + k) * G + e] (fastrnn_lane_column).
   Per gate, hidden 200 (12 whole groups and 8 units) had cost what 208 costs, and
   a thread holding the tails 4 half-empty groups where 2 hold them.
   A thread's groups start at element n_gates * j0 * K of a buffer of
   fastrnn_packed_size(n_gates, H, K) elements shared by the whole team.

   Written with GCC vector extensions, so one source serves AVX2/AVX-512 under
   -march=native and plain SSE2 in a portable build. */
#ifndef FASTRNN_PACKED_GEMM_H
#define FASTRNN_PACKED_GEMM_H
#include <stddef.h>
#include <string.h>
#include "_vectors.h"

/* A group is one vector register of float32: 16 columns under AVX-512, else 8.  With
   AVX-512 the tiles run twice the FLOPs per instruction of AVX2 (OpenBLAS picks its
   Haswell kernels on AMD's Zen 5, so BLAS stays at AVX2's rate there).  float64
   groups are 8 columns: one AVX-512 register, two AVX2 ones (GCC lowers a 16-double
   vector, two AVX-512 registers, through memory: float64 ran 4-5x slower). */
#if defined(__AVX512F__)
#define FASTRNN_GROUP_f32 16
#define FASTRNN_GROUP_f64 8
typedef float fastrnn_group_f32 __attribute__((vector_size(64)));
#else
#define FASTRNN_GROUP_f32 8
#define FASTRNN_GROUP_f64 8
typedef float fastrnn_group_f32 __attribute__((vector_size(32)));
#endif
typedef double fastrnn_group_f64 __attribute__((vector_size(64)));
/* Threads split the units in multiples of FASTRNN_GROUP, a whole number of groups of
   either dtype; packed buffers are sized for groups that wide. */
#define FASTRNN_GROUP FASTRNN_GROUP_f32

/* The tile's loops over its constant sizes must unroll before GCC decides where
   the accumulators live, or they stay in memory. */
#if defined(__GNUC__) && !defined(__clang__)
#define FASTRNN_UNROLL _Pragma("GCC unroll 16")
#elif defined(__clang__)
#define FASTRNN_UNROLL _Pragma("unroll")
#else
#define FASTRNN_UNROLL
#endif

#if defined(__GNUC__)
#define FASTRNN_PG_INLINE static inline __attribute__((always_inline))
#else
#define FASTRNN_PG_INLINE static inline
#endif

/* A thread's groups (the packed layout above) for groups of ``group`` columns. */
typedef struct {
    ptrdiff_t whole;     /* whole groups per gate */
    ptrdiff_t tail;      /* units of each gate after them, r */
    ptrdiff_t n_whole;   /* groups before the tails' */
    ptrdiff_t n;         /* groups in all */
} fastrnn_groups;

static inline fastrnn_groups fastrnn_groups_of(ptrdiff_t n_gates, ptrdiff_t j0, ptrdiff_t j1,
                                               ptrdiff_t group) {
    fastrnn_groups s;
    ptrdiff_t units = j1 > j0 ? j1 - j0 : 0;
    s.whole = units / group;
    s.tail = units % group;
    s.n_whole = n_gates * s.whole;
    s.n = s.n_whole + (n_gates * s.tail + group - 1) / group;
    return s;
}

/* The column (g * H + u) of lane e of group q, or -1 for a padding lane. */
static inline ptrdiff_t fastrnn_lane_column(const fastrnn_groups* s, ptrdiff_t q, ptrdiff_t e,
                                            ptrdiff_t n_gates, ptrdiff_t H, ptrdiff_t j0,
                                            ptrdiff_t group) {
    if (q < s->n_whole)
        return (q / s->whole) * H + j0 + (q % s->whole) * group + e;
    ptrdiff_t f = (q - s->n_whole) * group + e;
    if (f >= n_gates * s->tail)
        return -1;
    return (f / s->tail) * H + j0 + s->whole * group + f % s->tail;
}

/* Whether group q's lanes in use are one run of columns: then *col is its first and
   *width its length (every whole group; a tail group within one gate). */
static inline int fastrnn_group_run(const fastrnn_groups* s, ptrdiff_t q, ptrdiff_t n_gates,
                                    ptrdiff_t H, ptrdiff_t j0, ptrdiff_t group,
                                    ptrdiff_t* col, int* width) {
    ptrdiff_t used = group;
    if (q >= s->n_whole) {
        ptrdiff_t f0 = (q - s->n_whole) * group;
        used = n_gates * s->tail - f0 < group ? n_gates * s->tail - f0 : group;
        if (f0 / s->tail != (f0 + used - 1) / s->tail)
            return 0;
    }
    *col = fastrnn_lane_column(s, q, 0, n_gates, H, j0, group);
    *width = (int)used;
    return 1;
}

/* Elements of the packed buffer of n_gates blocks of H columns, depth K. */
static inline ptrdiff_t fastrnn_packed_size(ptrdiff_t n_gates, ptrdiff_t H, ptrdiff_t K) {
    return n_gates * ((H + FASTRNN_GROUP - 1) / FASTRNN_GROUP) * FASTRNN_GROUP * K;
}

/* Elements of one thread's panel for fastrnn_panel_gemm: two groups, depth K. */
static inline ptrdiff_t fastrnn_panel_size(ptrdiff_t K) {
    return 2 * FASTRNN_GROUP * K;
}

/* Elements of one gate's H columns, depth K, where one thread packs every unit:
   gate g of such a buffer starts g times this far in. */
static inline ptrdiff_t fastrnn_gate_packed_size_f32(ptrdiff_t H, ptrdiff_t K) {
    return (H + FASTRNN_GROUP_f32 - 1) / FASTRNN_GROUP_f32 * FASTRNN_GROUP_f32 * K;
}
static inline ptrdiff_t fastrnn_gate_packed_size_f64(ptrdiff_t H, ptrdiff_t K) {
    return (H + FASTRNN_GROUP_f64 - 1) / FASTRNN_GROUP_f64 * FASTRNN_GROUP_f64 * K;
}

/* Keep a loaded weight vector in a register for every row of a tile.  Left alone,
   GCC folds the load into each row's FMA when a tile has few rows, so a tile of 2-4
   rows loaded every weight vector once per row and was load-bound: measured on one
   core (a C harness, 1024 columns, K = 512), a 2-row tile took 92 us, as long as a
   6-row one (88 us), and a 4-row tile 146 us; pinned, 61-79 us and 96-99 us, and
   32 rows (five 6-row tiles and a 2-row one) 470-478 us against 510-560 us.  A
   single row uses each loaded vector once, and folding is better there (2.6 against
   3.2-3.5 us at K = 128), so MR = 1 is left to the compiler. */
#if defined(__GNUC__) && defined(__AVX512F__)
#define FASTRNN_IN_REGISTER_f32(v) __asm__("" : "+v"(v))   /* one of 32 512-bit registers */
#elif defined(__GNUC__) && defined(__AVX__)
#define FASTRNN_IN_REGISTER_f32(v) __asm__("" : "+x"(v))   /* one 256-bit register */
#else
#define FASTRNN_IN_REGISTER_f32(v) ((void)0)
#endif
/* float64 groups are one AVX-512 register, or two AVX2 ones: left as they are there. */
#if defined(__GNUC__) && defined(__AVX512F__)
#define FASTRNN_IN_REGISTER_f64(v) __asm__("" : "+v"(v))
#else
#define FASTRNN_IN_REGISTER_f64(v) ((void)0)
#endif

/* One tile: MR rows of A times NG groups, K deep, KU independent accumulator sets
   so that enough FMAs are in flight when MR * NG is small.  Each (MR, NG, KU) is its
   own function with literal sizes, so the accumulators live in registers.  Never
   inlined: GCC inlined the small tiles into the dispatching switch and allocated
   their registers worse there (measured on one core, a C harness, 256 columns,
   K = 128: 2 rows 5.1 -> 2.6 us, 4 rows 6.6 -> 4.0 us, 8 rows 10.6 -> 7.9 us). */
#if defined(__GNUC__)
#define FASTRNN_PG_TILE_ATTR __attribute__((noinline))
#else
#define FASTRNN_PG_TILE_ATTR
#endif
#define FASTRNN_DEFINE_TILE(NAME, SUF, T, V, MR, NG, KU, MS, KS)                       \
FASTRNN_PG_TILE_ATTR static void NAME##_##SUF##_##MR##_##NG(                           \
        ptrdiff_t K, const T* a, ptrdiff_t lda, const T* bp, T* c, ptrdiff_t ldc,      \
        const T* init, ptrdiff_t ld_init, const ptrdiff_t* col, const int* width) {    \
    V acc[KU][MR][NG];                                                                 \
    FASTRNN_UNROLL for (int u = 0; u < KU; u++)                                        \
        FASTRNN_UNROLL for (int m = 0; m < MR; m++)                                    \
            FASTRNN_UNROLL for (int g = 0; g < NG; g++)                                \
                acc[u][m][g] = (V){0};                                                 \
    ptrdiff_t k = 0;                                                                   \
    for (; k + KU <= K; k += KU) {                                                     \
        FASTRNN_UNROLL for (int u = 0; u < KU; u++) {                                  \
            V b[NG];                                                                   \
            FASTRNN_UNROLL for (int g = 0; g < NG; g++) {                              \
                memcpy(&b[g], bp + (g * K + k + u) * FASTRNN_GROUP_##SUF, sizeof(V));  \
                if (NAME##_PREFETCH)            /* one line ahead per group and k */   \
                    __builtin_prefetch((const char*)(bp + (g * K + k + u)              \
                                       * FASTRNN_GROUP_##SUF) + FASTRNN_STREAM_AHEAD, 0, 3); \
                if (MR > 1)                                                            \
                    FASTRNN_IN_REGISTER_##SUF(b[g]);                                   \
            }                                                                          \
            FASTRNN_UNROLL for (int m = 0; m < MR; m++) {                              \
                T s = a[m * MS + (k + u) * KS];                                        \
                V av = s - (V){0};                  /* s in every lane */              \
                FASTRNN_UNROLL for (int g = 0; g < NG; g++)                            \
                    acc[u][m][g] += av * b[g];                                         \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    for (; k < K; k++) {                                                               \
        V b[NG];                                                                       \
        FASTRNN_UNROLL for (int g = 0; g < NG; g++)                                    \
            memcpy(&b[g], bp + (g * K + k) * FASTRNN_GROUP_##SUF, sizeof(V));          \
        FASTRNN_UNROLL for (int m = 0; m < MR; m++) {                                  \
            T s = a[m * MS + k * KS];                                                  \
            V av = s - (V){0};                                                         \
            FASTRNN_UNROLL for (int g = 0; g < NG; g++)                                \
                acc[0][m][g] += av * b[g];                                             \
        }                                                                              \
    }                                                                                  \
    FASTRNN_UNROLL for (int u = 1; u < KU; u++)                                        \
        FASTRNN_UNROLL for (int m = 0; m < MR; m++)                                    \
            FASTRNN_UNROLL for (int g = 0; g < NG; g++)                                \
                acc[0][m][g] += acc[u][m][g];                                          \
    FASTRNN_UNROLL for (int m = 0; m < MR; m++) {                                      \
        FASTRNN_UNROLL for (int g = 0; g < NG; g++) {                                  \
            T* dst = c + m * ldc + col[g];                                             \
            const T* old = init != NULL ? init + m * ld_init + col[g] : NULL;          \
            V r = acc[0][m][g];                                                        \
            if (width[g] == FASTRNN_GROUP_##SUF) {                                     \
                if (old != NULL) {                                                     \
                    V o;                                                               \
                    memcpy(&o, old, sizeof(V));                                        \
                    r += o;                                                            \
                }                                                                      \
                memcpy(dst, &r, sizeof(V));                                            \
            } else {                                                                   \
                for (int e = 0; e < width[g]; e++)                                     \
                    dst[e] = old != NULL ? r[e] + old[e] : r[e];                       \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}

/* FASTRNN_GROUP whole rows of a row-major W (row e at src + e * ld) into one packed
   group: dst[k * FASTRNN_GROUP + e] = src[e * ld + k].  Packing runs on every kernel
   call, so float32 transposes 8 x 8 blocks in registers (measured 2.4-2.9x faster
   than the element loop, H = 128 to 512), eight rows of the group at a time;
   float64 keeps the element loop. */
static void fastrnn_pack_rows_f32(const float* src, ptrdiff_t ld, ptrdiff_t K, float* dst) {
    for (int e0 = 0; e0 < FASTRNN_GROUP_f32; e0 += 8) {
        const float* s8 = src + e0 * ld;
        float* d8 = dst + e0;
        ptrdiff_t k = 0;
        for (; k + 8 <= K; k += 8) {
            fastrnn_v8f r[8], t[8], u[8];
            for (int e = 0; e < 8; e++)
                memcpy(&r[e], s8 + e * ld + k, sizeof(fastrnn_v8f));
            for (int e = 0; e < 8; e += 2) {        /* pairs of rows, 32-bit interleave */
                t[e] = FASTRNN_SHUFFLE8(r[e], r[e + 1], 0, 8, 1, 9, 4, 12, 5, 13);
                t[e + 1] = FASTRNN_SHUFFLE8(r[e], r[e + 1], 2, 10, 3, 11, 6, 14, 7, 15);
            }
            for (int e = 0; e < 8; e += 4) {        /* 64-bit interleave */
                u[e] = FASTRNN_SHUFFLE8(t[e], t[e + 2], 0, 1, 8, 9, 4, 5, 12, 13);
                u[e + 1] = FASTRNN_SHUFFLE8(t[e], t[e + 2], 2, 3, 10, 11, 6, 7, 14, 15);
                u[e + 2] = FASTRNN_SHUFFLE8(t[e + 1], t[e + 3], 0, 1, 8, 9, 4, 5, 12, 13);
                u[e + 3] = FASTRNN_SHUFFLE8(t[e + 1], t[e + 3], 2, 3, 10, 11, 6, 7, 14, 15);
            }
            /* 128-bit halves: columns k + i and k + 4 + i */
            for (int i = 0; i < 4; i++) {
                fastrnn_v8f lo = FASTRNN_SHUFFLE8(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
                fastrnn_v8f hi =
                    FASTRNN_SHUFFLE8(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
                memcpy(d8 + (k + i) * FASTRNN_GROUP_f32, &lo, sizeof(fastrnn_v8f));
                memcpy(d8 + (k + 4 + i) * FASTRNN_GROUP_f32, &hi, sizeof(fastrnn_v8f));
            }
        }
        for (; k < K; k++)
            for (int e = 0; e < 8; e++)
                d8[k * FASTRNN_GROUP_f32 + e] = s8[e * ld + k];
    }
}
static void fastrnn_pack_rows_f64(const double* src, ptrdiff_t ld, ptrdiff_t K,
                                  double* dst) {
    for (int e = 0; e < FASTRNN_GROUP_f64; e++)
        for (ptrdiff_t k = 0; k < K; k++)
            dst[k * FASTRNN_GROUP_f64 + e] = src[e * ld + k];
}

/* The tiles and their accumulator sets (KU): at least 8 vector FMAs in flight (two
   FMA units of four cycles' latency) without running out of AVX2's 16 vector
   registers.  float32: a group is one vector; tiles up to 6 rows x 2 groups.
   float64: a group is one AVX-512 vector or two AVX2 ones; tiles up to 3 rows x 2.
   AVX-512's 32 registers hold 8-row float32 tiles (16 accumulators) too: on one core
   (C harness, K = 256, 512 columns) 8 rows ran at 255 GFLOP/s where 6 + 2 had run at 219,
   16 rows at 252-255 against 246 (6 + 6 + 4), 32 at 255 against 244; in the layers (two
   threads, T = 50, alternating processes) 0.92-1.01x the time, LSTM(512) inference at
   batch 32 0.95x, GRU(512) at batch 8 0.92x.  The weight gradients keep 6-row tiles: with
   8, training measured 1.01-1.15x slower.  Under AVX2 the 8-row tiles would spill. */
#if defined(__AVX512F__)
#define FASTRNN_MR_f32 8
/* A product of 4 or 5 rows in all (a step of batch 4-5, or a thread's share of
   batch 8-10) runs on tiles of four groups: per loaded weight vector 4-5 FMAs either
   way, but 16-20 accumulators in flight instead of 8-10, and each broadcast row
   element serves four FMAs instead of two.  Measured on one core (C harness, a
   step's columns of an LSTM): 4 rows 0.90-0.93x the time (hidden 128, 200), 5 rows
   0.94-0.96x; 2, 3 and 6 rows measured even or slower.  In the layers (two threads,
   T = 50, alternating processes, median of 6 pairs): LSTM inference at batch 8 /
   hidden 128 0.95x, batch 10 / 200 0.93x, batch 4-5 0.98-0.99x; GRU 0.98-0.99x.  A
   longer product's last tile of 4-5 rows takes four groups too (the full tiles above
   it two pairs of them): LSTM inference at batch 24-26 (a thread's 12-13 rows)
   0.96-0.97x; training and the GRU even. */
#define FASTRNN_WIDE_ROWS_MIN_f32 4
#define FASTRNN_WIDE_ROWS_MAX_f32 5
#define FASTRNN_TALL_TILES_f32(NAME, MS, KS)                                           \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 8, 2, 1, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 8, 1, 2, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 7, 2, 1, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 7, 1, 2, MS, KS)
#define FASTRNN_WIDE_TILES_f32(NAME, MS, KS)                                           \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 5, 4, 1, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 4, 4, 1, MS, KS)
#define FASTRNN_TALL_CASES_f32(NAME)                                                   \
    FASTRNN_PG_CASE(NAME, f32, 8, 2) FASTRNN_PG_CASE(NAME, f32, 8, 1)                  \
    FASTRNN_PG_CASE(NAME, f32, 7, 2) FASTRNN_PG_CASE(NAME, f32, 7, 1)
#define FASTRNN_WIDE_CASES_f32(NAME)                                                   \
    FASTRNN_PG_CASE(NAME, f32, 5, 4) FASTRNN_PG_CASE(NAME, f32, 4, 4)
#else
#define FASTRNN_MR_f32 6
#define FASTRNN_WIDE_ROWS_MIN_f32 1          /* none: 16 accumulators would spill */
#define FASTRNN_WIDE_ROWS_MAX_f32 0
#define FASTRNN_TALL_TILES_f32(NAME, MS, KS)
#define FASTRNN_WIDE_TILES_f32(NAME, MS, KS)
#define FASTRNN_TALL_CASES_f32(NAME)
#define FASTRNN_WIDE_CASES_f32(NAME)
#endif
#define FASTRNN_DEFINE_TILES_f32(NAME, MS, KS)                                         \
    FASTRNN_TALL_TILES_f32(NAME, MS, KS)                                               \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 6, 2, 1, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 6, 1, 2, MS, KS)          \
    FASTRNN_SMALL_TILES_f32(NAME, MS, KS)
/* Products of at most FASTRNN_STREAM_ROWS rows: wide tiles and tiles of 1-5 rows. */
#define FASTRNN_SMALL_TILES_f32(NAME, MS, KS)                                          \
    FASTRNN_WIDE_TILES_f32(NAME, MS, KS)                                               \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 5, 2, 1, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 5, 1, 2, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 4, 2, 1, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 4, 1, 2, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 3, 2, 2, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 3, 1, 3, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 2, 2, 2, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 2, 1, 4, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 1, 2, 4, MS, KS)          \
    FASTRNN_DEFINE_TILE(NAME, f32, float, fastrnn_group_f32, 1, 1, 8, MS, KS)
#define FASTRNN_DEFINE_TILES_f64(NAME, MS, KS)                                         \
    FASTRNN_DEFINE_TILE(NAME, f64, double, fastrnn_group_f64, 3, 2, 1, MS, KS)         \
    FASTRNN_DEFINE_TILE(NAME, f64, double, fastrnn_group_f64, 3, 1, 2, MS, KS)         \
    FASTRNN_DEFINE_TILE(NAME, f64, double, fastrnn_group_f64, 2, 2, 1, MS, KS)         \
    FASTRNN_DEFINE_TILE(NAME, f64, double, fastrnn_group_f64, 2, 1, 2, MS, KS)         \
    FASTRNN_DEFINE_TILE(NAME, f64, double, fastrnn_group_f64, 1, 2, 2, MS, KS)         \
    FASTRNN_DEFINE_TILE(NAME, f64, double, fastrnn_group_f64, 1, 1, 4, MS, KS)

#define FASTRNN_PG_CASE(NAME, SUF, MR, NG)                                             \
    case (MR) * 8 + (NG):                                                              \
        NAME##_##SUF##_##MR##_##NG(K, a, lda, bp, c, ldc, init, ld_init, col, width);  \
        return;
/* C[m, col[g] + e] = (A . B)[m, g * GROUP + e] + init[m * ld_init + col[g] + e] for the
   tile's rows m, its groups g and e < width[g]: with init = C, ld_init = ldc the tile
   accumulates; with ld_init = 0 it adds one row to every row (a bias); NULL, nothing. */
#define FASTRNN_DISPATCH_SIGNATURE(NAME, SUF, T)                                       \
static void NAME##_##SUF(int mr, int ng, ptrdiff_t K, const T* a, ptrdiff_t lda,       \
        const T* bp, T* c, ptrdiff_t ldc, const T* init, ptrdiff_t ld_init,            \
        const ptrdiff_t* col, const int* width)
#define FASTRNN_DEFINE_DISPATCH_f32(DISPATCH, NAME)                                    \
FASTRNN_DISPATCH_SIGNATURE(DISPATCH, f32, float) {                                     \
    switch (mr * 8 + ng) {                                                             \
        FASTRNN_TALL_CASES_f32(NAME)                                                   \
        FASTRNN_PG_CASE(NAME, f32, 6, 2) FASTRNN_PG_CASE(NAME, f32, 6, 1)              \
        FASTRNN_SMALL_CASES_f32(NAME)                                                  \
    }                                                                                  \
}
#define FASTRNN_DEFINE_SMALL_DISPATCH_f32(DISPATCH, NAME)                              \
FASTRNN_DISPATCH_SIGNATURE(DISPATCH, f32, float) {                                     \
    switch (mr * 8 + ng) {                                                             \
        FASTRNN_SMALL_CASES_f32(NAME)                                                  \
    }                                                                                  \
}
#define FASTRNN_SMALL_CASES_f32(NAME)                                                  \
        FASTRNN_WIDE_CASES_f32(NAME)                                                   \
        FASTRNN_PG_CASE(NAME, f32, 5, 2) FASTRNN_PG_CASE(NAME, f32, 5, 1)              \
        FASTRNN_PG_CASE(NAME, f32, 4, 2) FASTRNN_PG_CASE(NAME, f32, 4, 1)              \
        FASTRNN_PG_CASE(NAME, f32, 3, 2) FASTRNN_PG_CASE(NAME, f32, 3, 1)              \
        FASTRNN_PG_CASE(NAME, f32, 2, 2) FASTRNN_PG_CASE(NAME, f32, 2, 1)              \
        FASTRNN_PG_CASE(NAME, f32, 1, 2) FASTRNN_PG_CASE(NAME, f32, 1, 1)
#define FASTRNN_DEFINE_DISPATCH_f64(DISPATCH, NAME)                                    \
FASTRNN_DISPATCH_SIGNATURE(DISPATCH, f64, double) {                                    \
    switch (mr * 8 + ng) {                                                             \
        FASTRNN_PG_CASE(NAME, f64, 3, 2) FASTRNN_PG_CASE(NAME, f64, 3, 1)              \
        FASTRNN_PG_CASE(NAME, f64, 2, 2) FASTRNN_PG_CASE(NAME, f64, 2, 1)              \
        FASTRNN_PG_CASE(NAME, f64, 1, 2) FASTRNN_PG_CASE(NAME, f64, 1, 1)              \
    }                                                                                  \
}

/* A product of a few rows (a step of batch 2-5: FASTRNN_STREAM_ROWS_MIN to _ROWS) on
   more packed weights than stay in a core's L2 twice over (FASTRNN_STREAM_BYTES) reads
   them from L3 at every step, its tiles doing too little work on each weight to hide
   that: those tiles prefetch the weights FASTRNN_STREAM_AHEAD bytes ahead (float32;
   float64 is the checking dtype).  Measured in one process, the two builds
   alternating (T = 50, two threads, 2026-11-27): LSTM inference at batch 3, hidden
   700, input 300 0.95x the time, batch 5 / 700 / 100 0.93-0.94x, batch 4 / 1024
   0.92-0.96x (input 256: 0.87-0.89x); the GRU at hidden 1024 (its r and z weights,
   4 MB a thread) 0.98-1.0x.  Where the weights were nearer (LSTM(512) and GRU(512)
   at batch 3, 1-2 MB a call) prefetching had cost 2-4.5%, at batch 2 (GRU(512))
   4%, hence the conditions.  At batch 2, under them (measured likewise, 10 rounds):
   LSTM hidden 700 / input 300 0.90-0.92x the time, 700 / 700 0.91x, 1024 0.96-1.03x,
   900 even; the GRU at 1024 0.93-0.98x, 700 / 300 0.98x. */
#define FASTRNN_STREAM_ROWS_MIN 2
#define FASTRNN_STREAM_ROWS 5
#define FASTRNN_STREAM_BYTES (5 * 512 * 1024)
#define FASTRNN_STREAM_AHEAD 4096
/* The steps' tiles read A(m, k) from row-major rows: a[m * lda + k]. */
#define fastrnn_pg_tile_PREFETCH 0
FASTRNN_DEFINE_TILES_f32(fastrnn_pg_tile, lda, 1)
FASTRNN_DEFINE_TILES_f64(fastrnn_pg_tile, lda, 1)
FASTRNN_DEFINE_DISPATCH_f32(fastrnn_pg_dispatch, fastrnn_pg_tile)
FASTRNN_DEFINE_DISPATCH_f64(fastrnn_pg_dispatch, fastrnn_pg_tile)
#define fastrnn_pgs_tile_PREFETCH 1
FASTRNN_SMALL_TILES_f32(fastrnn_pgs_tile, lda, 1)
FASTRNN_DEFINE_SMALL_DISPATCH_f32(fastrnn_pgs_dispatch, fastrnn_pgs_tile)
#define FASTRNN_STREAM_DISPATCH_f32 fastrnn_pgs_dispatch_f32
#define FASTRNN_STREAM_DISPATCH_f64 fastrnn_pg_dispatch_f64
/* A weight gradient's tiles read A = d^T from the rows of d: A(m, k) = a[k * lda + m]. */
#define fastrnn_wg_tile_PREFETCH 0
FASTRNN_DEFINE_TILES_f32(fastrnn_wg_tile, 1, lda)
FASTRNN_DEFINE_TILES_f64(fastrnn_wg_tile, 1, lda)
FASTRNN_DEFINE_DISPATCH_f32(fastrnn_wg_dispatch, fastrnn_wg_tile)
FASTRNN_DEFINE_DISPATCH_f64(fastrnn_wg_dispatch, fastrnn_wg_tile)

/* Rows of the next row tile of a product when ``rest`` rows remain: full tiles of
   mr_max; but where the thread's packed weights are too many to stay in L1
   (``balance``), a last tile of fewer than FASTRNN_TAIL_MIN_ROWS rows would read them
   all again for a few FMAs on each (one row: one FMA per weight vector loaded), and
   the last full tile and that tail become two tiles of about equal rows instead (9
   -> 5 + 4, 17 -> 8 + 5 + 4).  Measured (two threads, T = 50, the two builds
   alternating in one process, median of 6-10 rounds): LSTM inference at batch 17 /
   hidden 128 0.86x the time, 18 0.85x, 19 0.90x, batch 17 / 96 / input 50 0.88x,
   batch 33 / 100 / 50 0.92x, training at batch 17-19 0.97-0.98x; the GRU at batch
   9-33 0.97-0.99x.  With the weights in L1 (the Elman RNN at hidden 128, 32 KB a
   thread) it had cost 6-14%, and FASTRNN_TAIL_REREAD_BYTES bounds it. */
#define FASTRNN_TAIL_MIN_ROWS 4
#define FASTRNN_TAIL_REREAD_BYTES (128 * 1024)
static inline int fastrnn_tile_rows(ptrdiff_t rest, int mr_max, int balance) {
    if (rest <= mr_max) return (int)rest;
    if (balance && rest < mr_max + FASTRNN_TAIL_MIN_ROWS) return (int)((rest + 1) / 2);
    return mr_max;
}
#define FASTRNN_DEFINE_PACKED_GEMM(SUF, T, V, MR_MAX)                                  \
/* Depths [k0, k0 + Kw) of the thread's groups [qa, qb) (dst: where group qa starts;   \
   groups of depth K), B(k0 + k, col) = w[k * rs_k + col * cs_n] for k < Kw, rs_k =  \
   1, cs_n = ldw for C += A . W^T (W row-major, one row per output column), rs_k =   \
   ldw, cs_n = 1 for C += A . W. */                                                   \
static void fastrnn_pack_groups_##SUF(const T* w, ptrdiff_t rs_k, ptrdiff_t cs_n,     \
        ptrdiff_t Kw, ptrdiff_t k0, ptrdiff_t K, ptrdiff_t n_gates, ptrdiff_t H,       \
        ptrdiff_t j0, ptrdiff_t j1, ptrdiff_t qa, ptrdiff_t qb, T* dst) {              \
    const ptrdiff_t G = FASTRNN_GROUP_##SUF;                                           \
    fastrnn_groups s = fastrnn_groups_of(n_gates, j0, j1, G);                          \
    dst += k0 * G;                                                                     \
    for (ptrdiff_t q = qa; q < qb; q++, dst += K * G) {                                \
        ptrdiff_t col;                                                                 \
        int width;                                                                     \
        if (!fastrnn_group_run(&s, q, n_gates, H, j0, G, &col, &width)) {              \
            memset(dst, 0, (size_t)Kw * G * sizeof(T));                                \
            for (ptrdiff_t e = 0; e < G; e++) {                                        \
                ptrdiff_t ce = fastrnn_lane_column(&s, q, e, n_gates, H, j0, G);       \
                if (ce >= 0)                                                           \
                    for (ptrdiff_t k = 0; k < Kw; k++)                                 \
                        dst[k * G + e] = w[ce * cs_n + k * rs_k];                      \
            }                                                                          \
            continue;                                                                  \
        }                                                                              \
        const T* src = w + col * cs_n;                                                 \
        if (width < G)                                                                 \
            memset(dst, 0, (size_t)Kw * G * sizeof(T));                                \
        if (cs_n != 1 && rs_k == 1 && width == G) {                                    \
            fastrnn_pack_rows_##SUF(src, cs_n, Kw, dst);                               \
        } else if (cs_n == 1 && width == G) {                                          \
            /* A whole group's row is one vector: a fixed-size copy. */               \
            for (ptrdiff_t k = 0; k < Kw; k++)                                         \
                memcpy(dst + k * G, src + k * rs_k, FASTRNN_GROUP_##SUF * sizeof(T));  \
        } else if (cs_n == 1) {                                                        \
            for (ptrdiff_t k = 0; k < Kw; k++)                                         \
                for (ptrdiff_t e = 0; e < width; e++)                                  \
                    dst[k * G + e] = src[k * rs_k + e];                                \
        } else {                                                                       \
            for (ptrdiff_t e = 0; e < width; e++)                                      \
                for (ptrdiff_t k = 0; k < Kw; k++)                                     \
                    dst[k * G + e] = src[e * cs_n + k * rs_k];                         \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* Depths [k0, k0 + Kw) of all the thread's groups, in its part of ``packed``. */     \
static void fastrnn_pack_part_##SUF(const T* w, ptrdiff_t rs_k, ptrdiff_t cs_n,       \
        ptrdiff_t Kw, ptrdiff_t k0, ptrdiff_t K, ptrdiff_t n_gates, ptrdiff_t H,       \
        ptrdiff_t j0, ptrdiff_t j1, T* packed) {                                       \
    fastrnn_groups s = fastrnn_groups_of(n_gates, j0, j1, FASTRNN_GROUP_##SUF);        \
    fastrnn_pack_groups_##SUF(w, rs_k, cs_n, Kw, k0, K, n_gates, H, j0, j1, 0, s.n,    \
                              packed + n_gates * j0 * K);                              \
}                                                                                      \
                                                                                       \
/* The thread's columns of B, depth K, B(k, col) = w[k * rs_k + col * cs_n]. */        \
static void fastrnn_pack_##SUF(const T* w, ptrdiff_t rs_k, ptrdiff_t cs_n, ptrdiff_t K, \
                               ptrdiff_t n_gates, ptrdiff_t H, ptrdiff_t j0,           \
                               ptrdiff_t j1, T* packed) {                              \
    fastrnn_pack_part_##SUF(w, rs_k, cs_n, K, 0, K, n_gates, H, j0, j1, packed);       \
}                                                                                      \
                                                                                       \
/* B = [W1 W2]^T, depth K1 + K2: the forward's stacked input and recurrent weights    \
   (W1 (n_gates*H, K1), W2 (n_gates*H, K2), row-major), for a step GEMM whose A rows  \
   are [x_t, h_{t-1}]. */                                                             \
static void fastrnn_pack_stacked_##SUF(const T* w1, ptrdiff_t K1, const T* w2,        \
        ptrdiff_t K2, ptrdiff_t n_gates, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t j1,      \
        T* packed) {                                                                   \
    fastrnn_pack_part_##SUF(w1, 1, K1, K1, 0, K1 + K2, n_gates, H, j0, j1, packed);    \
    fastrnn_pack_part_##SUF(w2, 1, K2, K2, K1, K1 + K2, n_gates, H, j0, j1, packed);   \
}                                                                                      \
                                                                                       \
/* fastrnn_packed_gemm over the thread's groups [qa, qb) only, bp0 where group qa's  \
   packed weights start. */                                                           \
static void fastrnn_gemm_groups_##SUF(ptrdiff_t M, ptrdiff_t K, const T* a,            \
        ptrdiff_t lda, const T* bp0, ptrdiff_t n_gates, ptrdiff_t H, ptrdiff_t j0,     \
        ptrdiff_t j1, ptrdiff_t qa, ptrdiff_t qb, T* c, ptrdiff_t ldc, int accumulate, \
        const T* bias) {                                                               \
    const ptrdiff_t G = FASTRNN_GROUP_##SUF;                                           \
    fastrnn_groups s = fastrnn_groups_of(n_gates, j0, j1, G);                          \
    /* Rows of A per pass over the weights: A's block stays in L2 (~128 KB). */        \
    ptrdiff_t rows_per_pass = (ptrdiff_t)(131072 / sizeof(T)) / (K > 0 ? K : 1);       \
    rows_per_pass = rows_per_pass < MR_MAX ? MR_MAX : rows_per_pass / MR_MAX * MR_MAX; \
    if (M <= 0 || qb <= qa) return;                                                    \
    if (K <= 0) {                                                                      \
        for (ptrdiff_t q = qa; q < qb; q++)                                            \
            for (ptrdiff_t e = 0; e < G; e++) {                                        \
                ptrdiff_t ce = fastrnn_lane_column(&s, q, e, n_gates, H, j0, G);       \
                if (ce >= 0 && !accumulate)                                            \
                    for (ptrdiff_t m = 0; m < M; m++)                                  \
                        c[m * ldc + ce] = bias != NULL ? bias[ce] : (T)0;              \
            }                                                                          \
        return;                                                                        \
    }                                                                                  \
    const T* init = accumulate ? c : bias;                                             \
    ptrdiff_t ld_init = accumulate ? ldc : 0;                                          \
    for (ptrdiff_t m_pass = 0; m_pass < M; m_pass += rows_per_pass) {                  \
        ptrdiff_t m_end = m_pass + rows_per_pass < M ? m_pass + rows_per_pass : M;     \
        /* The pass's last tiles, or its only one, may take four groups at once. */   \
        int balance = (size_t)((qb - qa) * K * G) * sizeof(T)                          \
                      > FASTRNN_TAIL_REREAD_BYTES;                                     \
        int ng_max = 2;                                                                \
        for (ptrdiff_t m = m_pass, mr; m < m_end; m += mr) {                           \
            mr = fastrnn_tile_rows(m_end - m, MR_MAX, balance);                        \
            if (FASTRNN_WIDE_TILE_##SUF(mr)) ng_max = 4;                               \
        }                                                                              \
        int stream = m_end - m_pass <= FASTRNN_STREAM_ROWS                             \
            && m_end - m_pass >= FASTRNN_STREAM_ROWS_MIN                               \
            && (size_t)((qb - qa) * K * G) * sizeof(T) > FASTRNN_STREAM_BYTES;         \
        for (ptrdiff_t q = qa, ng = 0; q < qb; q += ng) {                              \
            const T* bp = bp0 + (q - qa) * K * G;                                      \
            ptrdiff_t col[4];                                                          \
            int width[4];                                                              \
            ng = 0;                                                                    \
            while (ng < ng_max && q + ng < qb                                          \
                   && fastrnn_group_run(&s, q + ng, n_gates, H, j0, G, &col[ng],       \
                                        &width[ng]))                                   \
                ng++;                                                                  \
            if (ng == 3) ng = 2;                                                       \
            if (ng == 0) {                                                             \
                /* Tail groups that span gates: the tile writes a scratch block, whose \
                   lanes then go to their columns (at most n_gates groups a thread). */\
                T scratch[MR_MAX * 2 * FASTRNN_GROUP_##SUF];                           \
                const ptrdiff_t scol[2] = {0, G};                                      \
                const int swidth[2] = {(int)G, (int)G};                                \
                ptrdiff_t c2;                                                          \
                int w2;                                                                \
                ng = q + 1 < qb && !fastrnn_group_run(&s, q + 1, n_gates, H, j0, G,    \
                                                      &c2, &w2) ? 2 : 1;               \
                for (ptrdiff_t m = m_pass, mr; m < m_end; m += mr) {                   \
                    mr = fastrnn_tile_rows(m_end - m, MR_MAX, balance);                \
                    (stream ? FASTRNN_STREAM_DISPATCH_##SUF : fastrnn_pg_dispatch_##SUF)( \
                        mr, (int)ng, K, a + m * lda, lda, bp, scratch, 2 * G, NULL, 0, \
                        scol, swidth);                                                 \
                    for (int g = 0; g < ng; g++)                                       \
                        for (ptrdiff_t e = 0; e < G; e++) {                            \
                            ptrdiff_t ce = fastrnn_lane_column(&s, q + g, e, n_gates,  \
                                                               H, j0, G);              \
                            if (ce < 0) continue;                                      \
                            for (int i = 0; i < mr; i++)                               \
                                c[(m + i) * ldc + ce] = scratch[i * 2 * G + g * G + e] \
                                    + (init != NULL ? init[(m + i) * ld_init + ce] : (T)0); \
                        }                                                              \
                }                                                                      \
                continue;                                                              \
            }                                                                          \
            for (ptrdiff_t m = m_pass, mr; m < m_end; m += mr) {                       \
                mr = fastrnn_tile_rows(m_end - m, MR_MAX, balance);                    \
                T* cm = c + m * ldc;                                                   \
                const T* im = init != NULL ? init + m * ld_init : NULL;                \
                const T* am = a + m * lda;                                             \
                if (ng == 4 && !FASTRNN_WIDE_TILE_##SUF(mr)) {  /* two pairs */        \
                    fastrnn_pg_dispatch_##SUF(mr, 2, K, am, lda, bp, cm, ldc, im,      \
                                              ld_init, col, width);                    \
                    fastrnn_pg_dispatch_##SUF(mr, 2, K, am, lda, bp + 2 * K * G, cm,   \
                                              ldc, im, ld_init, col + 2, width + 2);   \
                } else {                                                               \
                    if (stream)                                                        \
                        FASTRNN_STREAM_DISPATCH_##SUF(mr, (int)ng, K, am, lda, bp, cm, \
                                                      ldc, im, ld_init, col, width);   \
                    else                                                               \
                        fastrnn_pg_dispatch_##SUF(mr, (int)ng, K, am, lda, bp, cm, ldc, \
                                                  im, ld_init, col, width);            \
                }                                                                      \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
/* C[m, col] = sum_k A[m, k] B(k, col) + C[m, col] if accumulate, else + bias[col]    \
   (bias NULL: + 0), for m < M and this thread's column set, B packed by             \
   fastrnn_pack_##SUF with the same n_gates, H, j0, j1, K.  The bias row rides in the \
   tiles' stores: laid down in C beforehand, it had cost a pass over C and a read of \
   it by the tiles (two threads, T = 50, alternating processes: inference LSTM        \
   0.95-0.99x the time, GRU 0.97-0.99x, RNN 0.96-0.99x; training even to 0.97x). */  \
static void fastrnn_packed_gemm_##SUF(ptrdiff_t M, ptrdiff_t K, const T* a,            \
        ptrdiff_t lda, const T* packed, ptrdiff_t n_gates, ptrdiff_t H, ptrdiff_t j0,  \
        ptrdiff_t j1, T* c, ptrdiff_t ldc, int accumulate, const T* bias) {            \
    fastrnn_groups s = fastrnn_groups_of(n_gates, j0, j1, FASTRNN_GROUP_##SUF);        \
    fastrnn_gemm_groups_##SUF(M, K, a, lda, packed + n_gates * j0 * K, n_gates, H, j0, \
                              j1, 0, s.n, c, ldc, accumulate, bias);                   \
}                                                                                      \
/* C[m, g * H + u] (+)= sum_k A[m, k] W[g * H + u, k] (+ bias as in packed_gemm) for  \
   m < M, g < n_gates and the thread's units [j0, j1) (W row-major, K wide), each     \
   pair of the thread's groups packed into ``panel`` (fastrnn_panel_size(K)          \
   elements, the thread's own) right before its tiles run.  For a product that uses  \
   its weights once: a whole packed copy would only be written to memory and read    \
   back (an input projection of one chunk, LSTM at batch 1 / hidden 1024: 19% of its \
   time, one core, C harness, M = 50). */                                             \
static void fastrnn_panel_gemm_##SUF(ptrdiff_t M, ptrdiff_t K, const T* a,             \
        ptrdiff_t lda, const T* w, ptrdiff_t n_gates, ptrdiff_t H, ptrdiff_t j0,       \
        ptrdiff_t j1, T* c, ptrdiff_t ldc, int accumulate, const T* bias, T* panel) {  \
    fastrnn_groups s = fastrnn_groups_of(n_gates, j0, j1, FASTRNN_GROUP_##SUF);        \
    for (ptrdiff_t q = 0; q < s.n; q += 2) {                                           \
        ptrdiff_t qb = q + 2 < s.n ? q + 2 : s.n;                                      \
        fastrnn_pack_groups_##SUF(w, 1, K, K, 0, K, n_gates, H, j0, j1, q, qb, panel); \
        fastrnn_gemm_groups_##SUF(M, K, a, lda, panel, n_gates, H, j0, j1, q, qb, c,   \
                                  ldc, accumulate, bias);                              \
    }                                                                                  \
}

#define FASTRNN_WIDE_ROWS_MIN_f64 1
#define FASTRNN_WIDE_ROWS_MAX_f64 0
/* Whether a tile of mr rows runs four groups at once. */
#define FASTRNN_WIDE_TILE_f32(mr) \
    ((mr) >= FASTRNN_WIDE_ROWS_MIN_f32 && (mr) <= FASTRNN_WIDE_ROWS_MAX_f32)
#define FASTRNN_WIDE_TILE_f64(mr) \
    ((mr) >= FASTRNN_WIDE_ROWS_MIN_f64 && (mr) <= FASTRNN_WIDE_ROWS_MAX_f64)
FASTRNN_DEFINE_PACKED_GEMM(f32, float, fastrnn_group_f32, FASTRNN_MR_f32)
FASTRNN_DEFINE_PACKED_GEMM(f64, double, fastrnn_group_f64, 3)

/* A weight gradient's packed chunk of source rows should stay in L2 (512 KB a core
   here) beside the rows of d it meets. */
#define FASTRNN_WG_L2_BYTES 131072
/* Rows of d copied at a time: a block of a thread's columns stays in L1. */
#define FASTRNN_WG_COPY_ROWS 16
/* The sources' columns, each source padded to whole groups. */
static inline ptrdiff_t fastrnn_wg_columns(ptrdiff_t n_src, const ptrdiff_t* k,
                                           ptrdiff_t group) {
    ptrdiff_t cols = 0;
    for (ptrdiff_t s = 0; s < n_src; s++)
        cols += (k[s] + group - 1) / group * group;
    return cols;
}
#define FASTRNN_DEFINE_WEIGHT_GRAD(SUF, T, MR_MAX)                                     \
/* Rows packed at a time: as many as the L2 budget holds across all the sources'      \
   columns, but at least 256 (dW's tiles are read and written once a chunk) and at    \
   most 512. */                                                                       \
static ptrdiff_t fastrnn_weight_grad_chunk_##SUF(ptrdiff_t n_src, const ptrdiff_t* k) { \
    ptrdiff_t cols = fastrnn_wg_columns(n_src, k, FASTRNN_GROUP_##SUF);                \
    ptrdiff_t rows = (ptrdiff_t)(FASTRNN_WG_L2_BYTES / sizeof(T)) / (cols > 0 ? cols : 1); \
    return rows < 256 ? 256 : rows > 512 ? 512 : rows;                                 \
}                                                                                      \
/* Elements of fastrnn_weight_grad's packing buffer for sources of k[s] columns and   \
   m1 - m0 = rows gradient rows. */                                                   \
static ptrdiff_t fastrnn_weight_grad_size_##SUF(ptrdiff_t n_src, const ptrdiff_t* k,   \
                                               ptrdiff_t rows) {                       \
    ptrdiff_t cols = fastrnn_wg_columns(n_src, k, FASTRNN_GROUP_##SUF);                \
    return (cols + (rows + MR_MAX - 1) / MR_MAX * MR_MAX)                              \
           * fastrnn_weight_grad_chunk_##SUF(n_src, k);                                \
}                                                                                      \
                                                                                       \
/* dw_s[m, c] = sum_n d[n, m] a_s[n, c] over the N rows of d (ldd apart) and of each  \
   source s < n_src (a[s], lda[s] apart, c < k[s] columns; dw[s] row-major, ldw[s]   \
   apart), for the gradient rows m0 <= m < m1.  A chunk of rows at a time, the       \
   thread's columns of d are copied once into row tiles (the tiles' A = d^T) and the \
   sources packed into groups (their B), both into ``packed``                        \
   (fastrnn_weight_grad_size elements); each block of the sources' columns that fits \
   the L2 budget then meets every row tile.  BLAS copies d (N x m, the big operand)  \
   once per weight.  With db (not NULL), db[m] = sum_n d[n, m] for the same rows,    \
   summed as d is copied (a bias gradient, without another pass over d). */          \
static void fastrnn_weight_grad_##SUF(ptrdiff_t N, const T* d, ptrdiff_t ldd,          \
        ptrdiff_t m0, ptrdiff_t m1, ptrdiff_t n_src, const T* const* a,                \
        const ptrdiff_t* lda, const ptrdiff_t* k, T* const* dw, const ptrdiff_t* ldw,  \
        T* db, T* packed) {                                                            \
    ptrdiff_t chunk = fastrnn_weight_grad_chunk_##SUF(n_src, k);                       \
    ptrdiff_t block = (ptrdiff_t)(FASTRNN_WG_L2_BYTES / sizeof(T)) / chunk;            \
    block = block < 2 * FASTRNN_GROUP_##SUF ? 2 * FASTRNN_GROUP_##SUF                  \
                                      : block / (2 * FASTRNN_GROUP_##SUF) * 2 * FASTRNN_GROUP_##SUF; \
    if (m1 <= m0) return;                                                              \
    if (db != NULL)                                                                    \
        memset(db + m0, 0, (size_t)(m1 - m0) * sizeof(T));                             \
    if (N <= 0) {                                                                      \
        for (ptrdiff_t s = 0; s < n_src; s++)                                          \
            for (ptrdiff_t m = m0; m < m1; m++)                                        \
                memset(dw[s] + m * ldw[s], 0, (size_t)k[s] * sizeof(T));               \
        return;                                                                        \
    }                                                                                  \
    T* d_packed = packed + fastrnn_wg_columns(n_src, k, FASTRNN_GROUP_##SUF) * chunk;  \
    for (ptrdiff_t n0 = 0; n0 < N; n0 += chunk) {                                      \
        ptrdiff_t nc = N - n0 < chunk ? N - n0 : chunk;                                \
        T* src_packed = packed;                                                        \
        for (ptrdiff_t s = 0; s < n_src; s++) {                                        \
            fastrnn_pack_part_##SUF(a[s] + n0 * lda[s], lda[s], 1, nc, 0, nc, 1, k[s], \
                                    0, k[s], src_packed);                              \
            src_packed += fastrnn_wg_columns(1, &k[s], FASTRNN_GROUP_##SUF) * nc;      \
        }                                                                              \
        /* The chunk's rows of d, the thread's columns, copied tile by tile ((k,       \
           MR_MAX) each), FASTRNN_WG_COPY_ROWS rows at a time.  d's rows are often 2^n \
           elements apart (4H, 3H): walking down its columns tile by tile would reuse \
           two sets of L1 and cross a page every row or two, where the prefetchers    \
           stop; a block of rows streams in once and then serves every tile from L1,  \
           each tile's share of the block written in one piece.  Row by row (a piece  \
           of every tile written per row), the copy had taken 7% of LSTM(128)'s       \
           forward_train + backward at batch 64, 3% now; measured (two threads, T =   \
           50, alternating processes): LSTM training 0.93-0.98x the time at batch 8-64,\
           hidden 128-512, GRU 0.93-0.95x; 32 rows a block measured 0.96-0.99x. */    \
        for (ptrdiff_t nb = 0; nb < nc; nb += FASTRNN_WG_COPY_ROWS) {                  \
            ptrdiff_t ne = nc - nb < FASTRNN_WG_COPY_ROWS ? nc : nb + FASTRNN_WG_COPY_ROWS; \
            const T* rows = d + (n0 + nb) * ldd + m0;                                  \
            ptrdiff_t m = 0;                                                           \
            for (; m + MR_MAX <= m1 - m0; m += MR_MAX) {                               \
                T* dst = d_packed + m * nc + nb * MR_MAX;                              \
                for (ptrdiff_t n = 0; n < ne - nb; n++)                                \
                    memcpy(dst + n * MR_MAX, rows + n * ldd + m, MR_MAX * sizeof(T));  \
            }                                                                          \
            if (m < m1 - m0) {                                                         \
                T* dst = d_packed + m * nc + nb * MR_MAX;                              \
                for (ptrdiff_t n = 0; n < ne - nb; n++)                                \
                    for (ptrdiff_t i = 0; m + i < m1 - m0; i++)                        \
                        dst[n * MR_MAX + i] = rows[n * ldd + m + i];                   \
            }                                                                          \
            if (db != NULL)                                                            \
                for (ptrdiff_t n = 0; n < ne - nb; n++)                                \
                    for (ptrdiff_t i = 0; i < m1 - m0; i++)                            \
                        db[m0 + i] += rows[n * ldd + i];                               \
        }                                                                              \
        src_packed = packed;                                                           \
        for (ptrdiff_t s = 0; s < n_src; s++) {                                        \
            for (ptrdiff_t c0 = 0; c0 < k[s]; c0 += block) {                           \
                ptrdiff_t c1 = k[s] - c0 < block ? k[s] : c0 + block;                  \
                for (ptrdiff_t m = m0; m < m1; m += MR_MAX) {                          \
                    int mr = (int)(m1 - m < MR_MAX ? m1 - m : MR_MAX);                 \
                    const T* am = d_packed + (m - m0) / MR_MAX * nc * MR_MAX;          \
                    for (ptrdiff_t col = c0; col < c1; col += 2 * FASTRNN_GROUP_##SUF) { \
                        int ng = c1 - col > FASTRNN_GROUP_##SUF ? 2 : 1;               \
                        T* cm = dw[s] + m * ldw[s];                                    \
                        ptrdiff_t cols[2] = {col, col + FASTRNN_GROUP_##SUF};          \
                        int width[2];                                                  \
                        for (int g = 0; g < 2; g++) {                                  \
                            ptrdiff_t left = c1 - col - g * FASTRNN_GROUP_##SUF;       \
                            width[g] = (int)(left < FASTRNN_GROUP_##SUF ? left : FASTRNN_GROUP_##SUF); \
                        }                                                              \
                        fastrnn_wg_dispatch_##SUF(mr, ng, nc, am, MR_MAX,              \
                                                  src_packed + col * nc, cm, ldw[s],   \
                                                  n0 > 0 ? cm : NULL, ldw[s], cols,    \
                                                  width);                              \
                    }                                                                  \
                }                                                                      \
            }                                                                          \
            src_packed += fastrnn_wg_columns(1, &k[s], FASTRNN_GROUP_##SUF) * nc;      \
        }                                                                              \
    }                                                                                  \
}

FASTRNN_DEFINE_WEIGHT_GRAD(f32, float, 6)
FASTRNN_DEFINE_WEIGHT_GRAD(f64, double, 3)

#endif
