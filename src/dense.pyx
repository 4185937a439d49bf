# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The products of fastrnn.Dense (and of any caller of fastrnn.models._gemm) on the
recurrent kernels' packed micro-kernel.

Where its groups are AVX-512's, the micro-kernel runs at about twice the rate of
SciPy's OpenBLAS, which picks its AVX2 kernels on AMD's Zen 5 (see
projection_packed_size in common.pxd); elsewhere, and for the shapes it does not
cover, the product goes to BLAS (fastrnn.kernels.blas.gemm_memview).  Each thread of
the team makes its share of C's columns (A . B^T, A . B) on B packed once per call,
or its share of C's rows (A^T . B, a weight gradient) on the weight gradients'
tiles.
"""

from cython cimport floating
from cython.parallel cimport prange

from fastrnn.kernels.blas import gemm_memview
from fastrnn.kernels.common cimport (
    FASTRNN_GROUP, split_units, fastrnn_packed_size, fastrnn_block_alloc,
    fastrnn_block_free, pack_weights, step_gemm, weight_grads)


cdef void _columns(bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                   const floating* a, const floating* b, floating* c, bint accumulate,
                   floating* packed, int tid, int nt) noexcept nogil:
    """C[:, j0:j1] (+)= A . op(B)[:, j0:j1] for thread tid's columns, B packed here."""
    cdef Py_ssize_t j0, j1
    split_units(n, tid, nt, &j0, &j1)
    if j1 <= j0:
        return
    pack_weights(b, trans_b, k, 1, n, j0, j1, packed)
    step_gemm(m, k, a, k, b, trans_b, packed, 1, n, j0, j1, c, n, accumulate, NULL)


cdef void _rows_of_at_b(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                        const floating* b, floating* c, int tid, int nt) noexcept nogil:
    """C := A^T . B (A (k, m), B (k, n)), thread tid's share of C's rows."""
    cdef const floating* sources[1]
    cdef floating* outputs[1]
    cdef Py_ssize_t ld_src[1]
    cdef Py_ssize_t widths[1]
    sources[0] = b
    outputs[0] = c
    ld_src[0] = n
    widths[0] = n
    weight_grads(k, m, a, m, 1, sources, ld_src, widths, outputs, ld_src, <floating*>NULL,
                 tid, nt)


def covers(bint trans_a, bint trans_b, double alpha, double beta):
    """Whether ``product`` runs this product on the micro-kernel (not on BLAS)."""
    return FASTRNN_GROUP >= 16 and alpha == 1 and (
        (not trans_a and beta in (0, 1)) or (trans_a and not trans_b and beta == 0))


def product(bint trans_a, bint trans_b, double alpha, floating[:, ::1] a,
            floating[:, ::1] b, double beta, floating[:, ::1] c, int num_threads=1):
    """C := alpha * op(A) . op(B) + beta * C on C-contiguous 2-D arrays, as
    fastrnn.kernels.blas.gemm_memview (which it calls for what ``covers`` leaves)."""
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    if not covers(trans_a, trans_b, alpha, beta) or m == 0 or n == 0 or k == 0:
        gemm_memview(trans_a, trans_b, alpha, a, b, beta, c, num_threads)
        return
    if (b.shape[1] if trans_b else b.shape[0]) != k or \
            (a.shape[1] if trans_a else a.shape[0]) != m or \
            (b.shape[0] if trans_b else b.shape[1]) != n:
        raise ValueError("product: operand shapes do not agree")
    cdef const floating* pa = &a[0, 0]
    cdef const floating* pb = &b[0, 0]
    cdef floating* pc = &c[0, 0]
    cdef bint accumulate = beta == 1
    cdef int nt = num_threads if num_threads > 1 else 1, tid
    cdef floating* packed = NULL
    if trans_a:
        for tid in prange(nt, num_threads=nt, schedule="static", nogil=True):
            _rows_of_at_b(m, n, k, pa, pb, pc, tid, nt)
        return
    # Without the packing space, step_gemm falls back to BLAS.
    packed = <floating*>fastrnn_block_alloc(fastrnn_packed_size(1, n, k) * sizeof(floating))
    try:
        for tid in prange(nt, num_threads=nt, schedule="static", nogil=True):
            _columns(trans_b, m, n, k, pa, pb, pc, accumulate, packed, tid, nt)
    finally:
        fastrnn_block_free(packed)
