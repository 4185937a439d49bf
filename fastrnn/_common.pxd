# Pieces shared by every cell kernel: OpenMP shims, thread work split, activations.
#
# All are ``inline`` so they compile into each kernel module and cost no call.
from cython cimport floating
from libc.math cimport exp, tanh

cdef extern from *:
    """
    /* One source with and without OpenMP: the stubs make a serial build behave as
       a team of one thread, and an orphaned barrier binds to the enclosing
       parallel region (OpenMP allows it), so kernels sync with one call. */
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTRNN_OPENMP 1
    static inline void fastrnn_barrier(void) {
    #pragma omp barrier
    }
    #else
    #define FASTRNN_OPENMP 0
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_num_threads(void) { return 1; }
    static inline int omp_get_max_threads(void) { return 1; }
    static inline void fastrnn_barrier(void) {}
    #endif
    """
    bint FASTRNN_OPENMP
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    int omp_get_max_threads() noexcept nogil
    void fastrnn_barrier() noexcept nogil

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Float32 activations as straight-line code (no calls, no branches), so that the
       kernels' elementwise loops vectorise.  Errors are measured in the test-suite
       (tests/test_numerics.py) over the whole float range. */
    static inline float fastrnn_expf(float x) {
        /* exp(x) = 2^n exp(r), x = n ln2 + r, |r| <= ln2/2; exp(r) by Cephes' expf
           polynomial; 2^n written into the exponent bits in two halves so that
           n = 128 (x at the clamp) cannot overflow the exponent field. */
        x = x < -87.33654f ? -87.33654f : x;     /* comparisons keep a NaN a NaN */
        x = x > 89.0f ? 89.0f : x;               /* exp(89) overflows to inf, as it should */
        const float shifter = 12582912.0f;        /* 1.5 * 2^23: adding it rounds to int */
        float t = x * 1.44269504088896341f + shifter;
        float n = t - shifter;
        float r = x - n * 0.693359375f;           /* ln2 in two parts (Cody-Waite) */
        r = r + n * 2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * (r * r) + r + 1.0f;
        uint32_t ti;
        memcpy(&ti, &t, 4);
        uint32_t e = ti - 0x4B400000u;            /* n as a two's-complement integer */
        uint32_t e1 = (uint32_t)((int32_t)e >> 1), e2 = e - e1;
        uint32_t b1 = (e1 + 127u) << 23, b2 = (e2 + 127u) << 23;
        float s1, s2;
        memcpy(&s1, &b1, 4);
        memcpy(&s2, &b2, 4);
        return p * s1 * s2;
    }
    static inline float fastrnn_sigmoidf(float x) {
        return 1.0f / (1.0f + fastrnn_expf(-x));
    }
    static inline float fastrnn_tanhf(float x) {
        /* |x| < 0.625: x P(x^2), a relative-error fit (no cancellation near 0);
           otherwise 1 - 2 / (exp(2|x|) + 1), where the result is >= 0.55. */
        float a = x < 0.0f ? -x : x;
        float z = x * x;
        float p = -5.660177788e-3f;
        p = p * z + 2.059119257e-2f;
        p = p * z - 5.372114838e-2f;
        p = p * z + 1.333112892e-1f;
        p = p * z - 3.333326062e-1f;
        p = p * z + 9.999999961e-1f;
        float small = x * p;
        float big = 1.0f - 2.0f / (fastrnn_expf(2.0f * a) + 1.0f);
        big = x < 0.0f ? -big : big;
        return a < 0.625f ? small : big;
    }
    """
    float fastrnn_expf(float) noexcept nogil
    float fastrnn_sigmoidf(float) noexcept nogil
    float fastrnn_tanhf(float) noexcept nogil


# Threads split hidden units in blocks of UNIT_BLOCK so that each thread's columns
# start on a 32-byte boundary of every gate row (vector loads, no false sharing).
cdef enum:
    UNIT_BLOCK = 8
    # Rows of input projection computed at a time in inference, so that the
    # scratch stays bounded whatever T is (one GEMM per chunk, not per step).
    CHUNK_ROWS = 512


cdef inline void split_units(Py_ssize_t n, int tid, int nt,
                             Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the share of thread tid (of nt) of n units, in whole blocks."""
    cdef Py_ssize_t nblk = (n + UNIT_BLOCK - 1) // UNIT_BLOCK
    lo[0] = min(n, (nblk * tid // nt) * UNIT_BLOCK)
    hi[0] = min(n, (nblk * (tid + 1) // nt) * UNIT_BLOCK)


cdef inline void split_rows(Py_ssize_t n, int tid, int nt,
                            Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the share of thread tid (of nt) of n rows."""
    lo[0] = n * tid // nt
    hi[0] = n * (tid + 1) // nt


cdef inline floating sigmoid(floating v) noexcept nogil:
    """1 / (1 + exp(-v)); exp overflows to inf for v << 0, giving exactly 0, never NaN.

    float32 uses the vectorisable fastrnn_sigmoidf (max relative error 1.5e-7),
    float64 the C library's exp (float64 is the accuracy reference)."""
    if floating is float:
        return fastrnn_sigmoidf(v)
    else:
        return 1.0 / (1.0 + exp(-v))


cdef inline floating tanh_(floating v) noexcept nogil:
    """tanh; float32 through fastrnn_tanhf (max relative error 1.5e-7)."""
    if floating is float:
        return fastrnn_tanhf(v)
    else:
        return tanh(v)


cdef inline Py_ssize_t total_rows(Py_ssize_t T, Py_ssize_t B,
                                  const Py_ssize_t* batch_sizes) noexcept nogil:
    """Rows of the packed sequence: sum of batch_sizes, or T * B when it is NULL."""
    cdef Py_ssize_t t, n = 0
    if batch_sizes == NULL:
        return T * B
    for t in range(T):
        n += batch_sizes[t]
    return n


cdef inline Py_ssize_t active_rows(Py_ssize_t B, const Py_ssize_t* batch_sizes,
                                   Py_ssize_t t) noexcept nogil:
    return B if batch_sizes == NULL else batch_sizes[t]


cdef inline void fill_bias(floating* dst, Py_ssize_t rows, Py_ssize_t ld,
                           Py_ssize_t lo, Py_ssize_t hi,
                           const floating* b1, const floating* b2) noexcept nogil:
    """dst[r, lo:hi] = b1[lo:hi] + b2[lo:hi] (either may be NULL) for r < rows."""
    cdef Py_ssize_t r, j
    cdef floating v
    for r in range(rows):
        for j in range(lo, hi):
            v = 0
            if b1 != NULL:
                v = v + b1[j]
            if b2 != NULL:
                v = v + b2[j]
            dst[r * ld + j] = v


cdef inline void column_sums(floating* out, const floating* src, Py_ssize_t rows,
                             Py_ssize_t ld, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """out[lo:hi] = sum over r < rows of src[r, lo:hi]."""
    cdef Py_ssize_t r, j
    for j in range(lo, hi):
        out[j] = 0
    for r in range(rows):
        for j in range(lo, hi):
            out[j] += src[r * ld + j]


cdef inline void copy_block(floating* dst, Py_ssize_t ldd, const floating* src,
                            Py_ssize_t lds, Py_ssize_t rows, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    """dst[r, lo:hi] = src[r, lo:hi] (src NULL: zeros) for r < rows."""
    cdef Py_ssize_t r, j
    for r in range(rows):
        for j in range(lo, hi):
            dst[r * ldd + j] = 0 if src == NULL else src[r * lds + j]


cdef inline Py_ssize_t chunk_steps(Py_ssize_t T, Py_ssize_t B, bint training) noexcept nogil:
    """Time steps whose input projection is computed by one GEMM.

    Training keeps every step's gates for backward, so it projects all T at once;
    inference works through chunks of about CHUNK_ROWS rows.
    """
    if training:
        return T
    return max(1, min(T, CHUNK_ROWS // max(B, 1)))


cdef inline Py_ssize_t rows_between(Py_ssize_t B, const Py_ssize_t* batch_sizes,
                                    Py_ssize_t t_lo, Py_ssize_t t_hi) noexcept nogil:
    """Packed rows of the time steps [t_lo, t_hi)."""
    cdef Py_ssize_t t, n = 0
    if batch_sizes == NULL:
        return (t_hi - t_lo) * B
    for t in range(t_lo, t_hi):
        n += batch_sizes[t]
    return n


cdef inline Py_ssize_t rows_finishing_from(Py_ssize_t T, Py_ssize_t B,
                                           const Py_ssize_t* batch_sizes,
                                           Py_ssize_t t, bint up,
                                           Py_ssize_t active) noexcept nogil:
    """First row whose sequence ends at step t when walking time up (or down).

    Rows are sorted by decreasing length, so the rows still active at the next
    step come first; the rest, [result, active), take their final state here.
    """
    cdef Py_ssize_t nxt = t + 1 if up else t - 1
    if nxt < 0 or nxt >= T:
        return 0
    return min(active, active_rows(B, batch_sizes, nxt))
