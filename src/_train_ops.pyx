# cython: language_level=3
"""The training loop's elementwise passes as single loops (fastrnn/kernels/_train_ops.h).

Internal: fastrnn.losses, fastrnn.optim and fastrnn.models check their arguments and
call these on C-contiguous arrays of one dtype.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

cdef extern from "fastrnn/kernels/_train_ops.h" nogil:
    double fastrnn_xent_row_f32(const float* z, Py_ssize_t C, Py_ssize_t label,
                                float scale, float* grad)
    double fastrnn_xent_row_f64(const double* z, Py_ssize_t C, Py_ssize_t label,
                                double scale, double* grad)
    void fastrnn_adam_f32(float* p, const float* grad, float* m, float* v, Py_ssize_t n,
                          float w1, float beta2, float w2, float step_size, float bc2_sqrt,
                          float eps, float decay)
    void fastrnn_adam_f64(double* p, const double* grad, double* m, double* v,
                          Py_ssize_t n, double w1, double beta2, double w2, double step_size,
                          double bc2_sqrt, double eps, double decay)
    void fastrnn_scatter_add_f32(float* dw, const Py_ssize_t* ids, const float* rows,
                                 Py_ssize_t n, Py_ssize_t D)
    void fastrnn_scatter_add_f64(double* dw, const Py_ssize_t* ids, const double* rows,
                                 Py_ssize_t n, Py_ssize_t D)

cdef enum:
    ADAM_CHUNK = 16384     # elements per chunk of Adam's loop; threads take whole chunks


def softmax_cross_entropy(const floating[:, ::1] z, const Py_ssize_t[::1] labels,
                          const unsigned char[::1] keep, floating[:, ::1] grad,
                          double scale, int num_threads):
    """Sum over the kept rows of logsumexp(z_i) - z_i[labels_i]; writes
    grad_i = scale * (softmax(z_i) - onehot(labels_i)), zero for rows not kept.

    ``keep`` is None (every row) or one flag per row; labels lie in range.
    """
    cdef Py_ssize_t n = z.shape[0], C = z.shape[1], i
    cdef const unsigned char* kept = &keep[0] if keep is not None and n > 0 else NULL
    cdef double total = 0
    if n == 0 or C == 0:
        return 0.0
    with nogil:
        for i in prange(n, num_threads=num_threads, schedule="static"):
            if kept != NULL and not kept[i]:
                memset(&grad[i, 0], 0, C * sizeof(floating))
            elif floating is float:
                total += fastrnn_xent_row_f32(&z[i, 0], C, labels[i], <float>scale,
                                              &grad[i, 0])
            else:
                total += fastrnn_xent_row_f64(&z[i, 0], C, labels[i], scale, &grad[i, 0])
    return total


def adam(floating[::1] p, const floating[::1] grad, floating[::1] m, floating[::1] v,
         double beta1, double beta2, double step_size, double bc2_sqrt, double eps,
         double decay, int num_threads):
    """One Adam update of p, m, v in place (formula in fastrnn.optim.Adam)."""
    cdef Py_ssize_t n = p.shape[0], chunk, start, count
    cdef Py_ssize_t n_chunks = (n + ADAM_CHUNK - 1) // ADAM_CHUNK
    if n == 0:
        return
    with nogil:
        for chunk in prange(n_chunks, num_threads=num_threads, schedule="static"):
            start = chunk * ADAM_CHUNK
            count = min(ADAM_CHUNK, n - start)
            if floating is float:
                fastrnn_adam_f32(&p[start], &grad[start], &m[start], &v[start], count,
                                 <float>(1 - beta1), <float>beta2, <float>(1 - beta2),
                                 <float>step_size, <float>bc2_sqrt, <float>eps,
                                 <float>decay)
            else:
                fastrnn_adam_f64(&p[start], &grad[start], &m[start], &v[start], count,
                                 1 - beta1, beta2, 1 - beta2, step_size, bc2_sqrt, eps,
                                 decay)


def scatter_add(floating[:, ::1] dw, const Py_ssize_t[::1] ids,
                const floating[:, ::1] rows):
    """dw[ids[i]] += rows[i] for every i (ids lie in range)."""
    cdef Py_ssize_t n = ids.shape[0]
    if n == 0 or dw.shape[1] == 0:
        return
    with nogil:
        if floating is float:
            fastrnn_scatter_add_f32(&dw[0, 0], &ids[0], &rows[0, 0], n, dw.shape[1])
        else:
            fastrnn_scatter_add_f64(&dw[0, 0], &ids[0], &rows[0, 0], n, dw.shape[1])
