# GRU kernels of fastrnn, for other Cython code: ``from fastrnn.kernels.gru cimport ...``.
#
# Layouts, threads and the one allocation as in fastrnn/kernels/lstm.pxd, gates in
# torch's order r, z, n:
#
#   x (N, I)   w_ih (3H, I)   w_hh (3H, H)   b_ih, b_hh (3H,) or NULL
#   h0 (B, H) or NULL;  y (N, ldy), H columns from ``y``;  h_n (B, H)
#   training buffers (NULL for inference): gates (N, 3H) post-activation r, z, n;
#       hns (N, H): W_hn h + b_hn (reset_after) or r * h (not);  h_prevs (N, H)
#   work   gru_workspace_size(T, B, H, training) elements of scratch
#
# reset_after=True:  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   (torch, cuDNN, Keras)
# reset_after=False: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)   (Cho et al., ONNX lbr=0)
# h' = (1 - z) * n + z * h
from cython cimport floating

cdef Py_ssize_t gru_workspace_size(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                                   bint training) noexcept nogil

cdef Py_ssize_t gru_backward_workspace_size(Py_ssize_t B, Py_ssize_t H) noexcept nogil

cdef void gru_forward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, bint reset_after,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* h0,
        floating* y, Py_ssize_t ldy, floating* h_n,
        floating* gates, floating* hns, floating* h_prevs,
        floating* work, int num_threads) noexcept nogil

# BPTT over a training forward's buffers (``gates`` and ``hns`` are overwritten).
# dy (N, ldy), dh_n (B, H) may be NULL.  Writes dx (N, I) (added to when
# accumulate_dx), dh0 (B, H), dw_ih (3H, I), dw_hh (3H, H), db_ih and db_hh (3H,)
# (NULL to skip).  ``work`` holds gru_backward_workspace_size(B, H) elements.
cdef void gru_backward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, bint reset_after,
        const floating* x, const floating* w_ih, const floating* w_hh,
        floating* gates, floating* hns, const floating* h_prevs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n,
        floating* dx, bint accumulate_dx, floating* dh0,
        floating* dw_ih, floating* dw_hh, floating* db_ih, floating* db_hh,
        floating* work, int num_threads) noexcept nogil
