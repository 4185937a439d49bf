# Row-major BLAS for the kernels, over the fused type ``floating``.
#
# Every kernel calls BLAS through these wrappers only: row-major is handled here,
# once, by swapping the operands of the column-major routine, so that no kernel
# ever calls sgemm/dgemm with hand-swapped arguments.
from cython cimport floating

cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* a, Py_ssize_t lda,
               const floating* b, Py_ssize_t ldb,
               floating beta, floating* c, Py_ssize_t ldc) noexcept nogil

cdef void gemv(bint trans, Py_ssize_t rows, Py_ssize_t cols, floating alpha,
               const floating* a, Py_ssize_t lda, const floating* x, Py_ssize_t incx,
               floating beta, floating* y, Py_ssize_t incy) noexcept nogil
