# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Row-major GEMM over scipy.linalg.cython_blas, for float32 and float64."""

from cython cimport floating
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

import time

import numpy as np


cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* a, Py_ssize_t lda,
               const floating* b, Py_ssize_t ldb,
               floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """C := alpha * op(A).op(B) + beta * C, all row-major; C is (m, n).

    Sizes are 64-bit here; callers guarantee (and the Python layer checks) that
    each one fits the 32-bit ``int`` of the BLAS interface.
    """
    if m <= 0 or n <= 0:
        return
    # A single row or column is a matrix-vector product; GEMM would pack the whole
    # matrix operand on every call (batch-1 recurrent steps are exactly this case).
    if m == 1 and k > 0:
        gemv(trans_b, k if trans_b else n, n if trans_b else k, alpha, b, ldb,
             a, lda if trans_a else 1, beta, c, 1)
        return
    if n == 1 and k > 0:
        gemv(not trans_a, m if trans_a else k, k if trans_a else m, alpha, a, lda,
             b, 1 if trans_b else ldb, beta, c, ldc)
        return
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap operands.
    cdef char ta = b"T" if trans_b else b"N"
    cdef char tb = b"T" if trans_a else b"N"
    cdef int m_ = <int>n, n_ = <int>m, k_ = <int>k
    # BLAS insists on leading dimensions >= 1 even where nothing is read (k == 0).
    cdef int lda_ = <int>(ldb if ldb > 1 else 1)
    cdef int ldb_ = <int>(lda if lda > 1 else 1)
    cdef int ldc_ = <int>(ldc if ldc > 1 else 1)
    if floating is float:
        sgemm(&ta, &tb, &m_, &n_, &k_, &alpha, <float*>b, &lda_, <float*>a, &ldb_,
              &beta, c, &ldc_)
    else:
        dgemm(&ta, &tb, &m_, &n_, &k_, &alpha, <double*>b, &lda_, <double*>a, &ldb_,
              &beta, c, &ldc_)


cdef void gemv(bint trans, Py_ssize_t rows, Py_ssize_t cols, floating alpha,
               const floating* a, Py_ssize_t lda, const floating* x, Py_ssize_t incx,
               floating beta, floating* y, Py_ssize_t incy) noexcept nogil:
    """y := alpha * op(A).x + beta * y, A column-major (rows, cols) with leading dim lda.

    Used by gemm on its row-major operands, which BLAS sees as column-major transposes.
    """
    cdef char t = b"T" if trans else b"N"
    cdef int m_ = <int>rows, n_ = <int>cols
    cdef int lda_ = <int>(lda if lda > 1 else 1)
    cdef int incx_ = <int>incx, incy_ = <int>incy
    if floating is float:
        sgemv(&t, &m_, &n_, &alpha, <float*>a, &lda_, <float*>x, &incx_, &beta, y, &incy_)
    else:
        dgemv(&t, &m_, &n_, &alpha, <double*>a, &lda_, <double*>x, &incx_, &beta, y, &incy_)


def gemm_memview(bint trans_a, bint trans_b, double alpha, floating[:, ::1] a,
                 floating[:, ::1] b, double beta, floating[:, ::1] c, int num_threads=1):
    """C := alpha * op(A).op(B) + beta * C on C-contiguous 2-D arrays.

    With ``num_threads`` > 1, an OpenMP team (fastrnn's, the recurrent kernels'
    runtime) splits C into row blocks, or column blocks when C is wide, each
    thread calling BLAS on its block; the caller holds BLAS to one thread."""
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != k or \
            (a.shape[1] if trans_a else a.shape[0]) != m or \
            (b.shape[0] if trans_b else b.shape[1]) != n:
        raise ValueError("gemm_memview: operand shapes do not agree")
    cdef const floating* pa = &a[0, 0] if a.size else NULL
    cdef const floating* pb = &b[0, 0] if b.size else NULL
    cdef floating* pc = &c[0, 0] if c.size else NULL
    cdef Py_ssize_t lda = a.shape[1], ldb = b.shape[1]
    cdef bint by_rows = m >= n
    cdef int tid, nt
    cdef Py_ssize_t lo, hi
    if num_threads <= 1 or (m if by_rows else n) < 2 * num_threads:
        with nogil:
            gemm(trans_a, trans_b, m, n, k, <floating>alpha, pa, lda, pb, ldb,
                 <floating>beta, pc, n)
        return
    nt = num_threads
    for tid in prange(nt, num_threads=nt, schedule="static", nogil=True):
        if by_rows:
            lo = m * tid // nt
            hi = m * (tid + 1) // nt
            # Rows lo..hi of op(A): a row offset in A, a column offset when transposed.
            gemm(trans_a, trans_b, hi - lo, n, k, <floating>alpha,
                 pa + (lo if trans_a else lo * lda) if pa != NULL else NULL, lda, pb, ldb,
                 <floating>beta, pc + lo * n if pc != NULL else NULL, n)
        else:
            lo = n * tid // nt
            hi = n * (tid + 1) // nt
            gemm(trans_a, trans_b, m, hi - lo, k, <floating>alpha, pa, lda,
                 pb + (lo * ldb if trans_b else lo) if pb != NULL else NULL, ldb,
                 <floating>beta, pc + lo if pc != NULL else NULL, n)


cdef extern from "fastrnn/kernels/_packed_gemm.h":
    enum: FASTRNN_GROUP
    Py_ssize_t fastrnn_packed_size(Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t K) noexcept nogil
    void fastrnn_pack_f32(const float* w, Py_ssize_t rs_k, Py_ssize_t cs_n, Py_ssize_t K,
                          Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                          float* packed) noexcept nogil
    void fastrnn_pack_f64(const double* w, Py_ssize_t rs_k, Py_ssize_t cs_n, Py_ssize_t K,
                          Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                          double* packed) noexcept nogil
    void fastrnn_packed_gemm_f32(Py_ssize_t M, Py_ssize_t K, const float* a, Py_ssize_t lda,
                                 const float* packed, Py_ssize_t n_gates, Py_ssize_t H,
                                 Py_ssize_t j0, Py_ssize_t j1, float* c, Py_ssize_t ldc,
                                 int accumulate, const float* bias) noexcept nogil
    void fastrnn_packed_gemm_f64(Py_ssize_t M, Py_ssize_t K, const double* a, Py_ssize_t lda,
                                 const double* packed, Py_ssize_t n_gates, Py_ssize_t H,
                                 Py_ssize_t j0, Py_ssize_t j1, double* c, Py_ssize_t ldc,
                                 int accumulate, const double* bias) noexcept nogil


def packed_group():
    """Columns of one group of packed weights: the unit a thread's share of the hidden
    units comes in (16 when built for AVX-512, else 8)."""
    return FASTRNN_GROUP


def packed_gemm_memview(floating[:, ::1] a, floating[:, ::1] w, bint by_rows,
                        Py_ssize_t n_gates, Py_ssize_t H, Py_ssize_t j0, Py_ssize_t j1,
                        floating[:, ::1] c, bint accumulate, floating[::1] bias=None):
    """The kernels' per-step product on packed weights, for tests: C[:, g*H + u]
    (+)= A . B[:, g*H + u] for g < n_gates, j0 <= u < j1, with B = w.T when
    ``by_rows`` (w is (n_gates*H, K)) else w (K, n_gates*H); j0 a multiple of
    ``packed_group()``.  Not accumulating, C gets the row ``bias`` (n_gates*H) added."""
    cdef Py_ssize_t M = a.shape[0], K = a.shape[1]
    if (j0 % FASTRNN_GROUP and j0 != j1) or not 0 <= j0 <= j1 <= H or c.shape[0] != M \
            or c.shape[1] != n_gates * H \
            or (w.shape[0], w.shape[1]) != ((n_gates * H, K) if by_rows else (K, n_gates * H)) \
            or (bias is not None and bias.shape[0] != n_gates * H):
        raise ValueError("packed_gemm_memview: operand shapes do not agree")
    cdef const floating* pb = &bias[0] if bias is not None and bias.shape[0] else NULL
    packed_arr = np.full(max(fastrnn_packed_size(n_gates, H, K), 1), np.nan,
                         np.asarray(a).dtype)
    cdef floating[::1] packed = packed_arr
    cdef Py_ssize_t rs_k = 1 if by_rows else n_gates * H
    cdef Py_ssize_t cs_n = K if by_rows else 1
    cdef const floating* pa = &a[0, 0] if a.size else NULL
    cdef const floating* pw = &w[0, 0] if w.size else NULL
    cdef floating* pc = &c[0, 0] if c.size else NULL
    with nogil:
        if floating is float:
            fastrnn_pack_f32(pw, rs_k, cs_n, K, n_gates, H, j0, j1, &packed[0])
            fastrnn_packed_gemm_f32(M, K, pa, K, &packed[0], n_gates, H, j0, j1, pc,
                                    n_gates * H, accumulate, pb)
        else:
            fastrnn_pack_f64(pw, rs_k, cs_n, K, n_gates, H, j0, j1, &packed[0])
            fastrnn_packed_gemm_f64(M, K, pa, K, &packed[0], n_gates, H, j0, j1, pc,
                                    n_gates * H, accumulate, pb)


def packed_gemm_seconds(float[:, ::1] a, float[:, ::1] w, float[:, ::1] c, int num_threads,
                        int calls):
    """Seconds of ``calls`` products C = A . W (float32, W (K, N)) on the kernels'
    packed micro-kernel, each of ``num_threads`` OpenMP threads its share of W's
    columns, packed once beforehand: the GEMM rate fastrnn's own tiles reach, the
    benchmark's second ceiling beside NumPy's SGEMM."""
    cdef Py_ssize_t M = a.shape[0], K = a.shape[1], N = w.shape[1]
    if w.shape[0] != K or c.shape[0] != M or c.shape[1] != N or M == 0 or K == 0 \
            or N == 0 or num_threads < 1 or calls < 1:
        raise ValueError("packed_gemm_seconds: operand shapes do not agree")
    packed_arr = np.empty(fastrnn_packed_size(1, N, K), np.float32)
    cdef float[::1] packed = packed_arr
    cdef Py_ssize_t nblk = (N + FASTRNN_GROUP - 1) // FASTRNN_GROUP, j0, j1
    cdef int tid, i, nt = num_threads
    for tid in prange(nt, num_threads=nt, schedule="static", nogil=True):
        j0 = min(N, nblk * tid // nt * FASTRNN_GROUP)
        j1 = min(N, nblk * (tid + 1) // nt * FASTRNN_GROUP)
        fastrnn_pack_f32(&w[0, 0], N, 1, K, 1, N, j0, j1, &packed[0])
    start = time.perf_counter()
    for tid in prange(nt, num_threads=nt, schedule="static", nogil=True):
        j0 = min(N, nblk * tid // nt * FASTRNN_GROUP)
        j1 = min(N, nblk * (tid + 1) // nt * FASTRNN_GROUP)
        for i in range(calls):
            fastrnn_packed_gemm_f32(M, K, &a[0, 0], K, &packed[0], 1, N, j0, j1, &c[0, 0],
                                    N, 0, NULL)
    return time.perf_counter() - start
