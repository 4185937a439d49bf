# Elman RNN kernels of fastrnn, for other Cython code: ``from fastrnn.kernels.rnn cimport ...``.
#
# h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).  Layouts (and threads,
# the one allocation) as in lstm.pxd, G = H:
#
#   x (N, I)   w_ih (H, I)   w_hh (H, H)   b_ih, b_hh (H,) or NULL
#   h0 (B, H) or NULL;  y (N, ldy), H columns from ``y``;  h_n (B, H)
#   training buffers (NULL for inference): hs (N, H) = h_t, h_prevs (N, H)
#   work   rnn_workspace_size(T, B, H, training) elements of scratch
from cython cimport floating

cdef enum:
    # ``activation`` argument of rnn_forward / rnn_backward
    ACT_TANH = 0
    ACT_RELU = 1
    ACT_SIGMOID = 2

cdef Py_ssize_t rnn_workspace_size(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                                   bint training) noexcept nogil

cdef void rnn_forward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, int activation,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* h0,
        floating* y, Py_ssize_t ldy, floating* h_n,
        floating* hs, floating* h_prevs, floating* work, int num_threads) noexcept nogil

# BPTT over a training forward's buffers (``hs`` is overwritten).  dy (N, ldy),
# dh_n (B, H) may be NULL.  Writes dx (N, I) (added to when accumulate_dx),
# dh0 (B, H), dw_ih (H, I), dw_hh (H, H) and db (H,) (the gradient of b_ih and
# b_hh alike; NULL to skip).
cdef void rnn_backward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, int activation,
        const floating* x, const floating* w_ih, const floating* w_hh,
        floating* hs, const floating* h_prevs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n,
        floating* dx, bint accumulate_dx, floating* dh0,
        floating* dw_ih, floating* dw_hh, floating* db, int num_threads) noexcept nogil
