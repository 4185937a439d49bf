/* The 256-bit vector types and lane shuffles that fastrnn's hand-tiled kernels share
   (_packed_gemm.h, _gemv_rows.h), written with GCC/Clang vector extensions so the
   compiler picks the instructions for the -march it was given. */
#ifndef FASTRNN_VECTORS_H
#define FASTRNN_VECTORS_H

typedef float fastrnn_v8f __attribute__((vector_size(32)));
typedef double fastrnn_v4d __attribute__((vector_size(32)));

/* FASTRNN_SHUFFLE8(a, b, i0..i7): lane e of the result is lane i_e of the 16-lane
   concatenation (a, b); FASTRNN_SHUFFLE4 the same for four doubles. */
#if defined(__clang__)
#define FASTRNN_SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) \
    __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7)
#define FASTRNN_SHUFFLE4(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
typedef int fastrnn_v8i __attribute__((vector_size(32)));
typedef long long fastrnn_v4l __attribute__((vector_size(32)));
#define FASTRNN_SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) \
    __builtin_shuffle(a, b, (fastrnn_v8i){i0, i1, i2, i3, i4, i5, i6, i7})
#define FASTRNN_SHUFFLE4(a, b, i0, i1, i2, i3) \
    __builtin_shuffle(a, b, (fastrnn_v4l){i0, i1, i2, i3})
#endif

/* Lane e of the result: the sum of the lanes of a[e] (eight dot products finished
   at once, a tree of shuffles in place of eight serial horizontal sums). */
static inline fastrnn_v8f fastrnn_sum_lanes8(const fastrnn_v8f a[8]) {
    fastrnn_v8f b[4], c[2];
    for (int e = 0; e < 4; e++)
        b[e] = FASTRNN_SHUFFLE8(a[2 * e], a[2 * e + 1], 0, 8, 2, 10, 4, 12, 6, 14)
             + FASTRNN_SHUFFLE8(a[2 * e], a[2 * e + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    for (int e = 0; e < 2; e++)
        c[e] = FASTRNN_SHUFFLE8(b[2 * e], b[2 * e + 1], 0, 1, 8, 9, 4, 5, 12, 13)
             + FASTRNN_SHUFFLE8(b[2 * e], b[2 * e + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    return FASTRNN_SHUFFLE8(c[0], c[1], 0, 1, 2, 3, 8, 9, 10, 11)
         + FASTRNN_SHUFFLE8(c[0], c[1], 4, 5, 6, 7, 12, 13, 14, 15);
}
static inline fastrnn_v4d fastrnn_sum_lanes4(const fastrnn_v4d a[4]) {
    fastrnn_v4d b0 = FASTRNN_SHUFFLE4(a[0], a[1], 0, 4, 2, 6)
                   + FASTRNN_SHUFFLE4(a[0], a[1], 1, 5, 3, 7);
    fastrnn_v4d b1 = FASTRNN_SHUFFLE4(a[2], a[3], 0, 4, 2, 6)
                   + FASTRNN_SHUFFLE4(a[2], a[3], 1, 5, 3, 7);
    return FASTRNN_SHUFFLE4(b0, b1, 0, 1, 4, 5) + FASTRNN_SHUFFLE4(b0, b1, 2, 3, 6, 7);
}
#endif
