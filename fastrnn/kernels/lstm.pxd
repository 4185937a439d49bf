# LSTM kernels of fastrnn, for other Cython code: ``from fastrnn.kernels.lstm cimport ...``.
#
# Buffers are row-major; weights in torch's layout, gates in torch's order i, f, g, o.
# N is the number of packed rows: T * B without ``batch_sizes`` (time-major rows),
# else sum(batch_sizes), the rows of step t being the first batch_sizes[t] sequences
# (sorted by decreasing length; torch's PackedSequence data).  P = proj_size, or H.
#
#   x        (N, I)     input rows                 w_ih (4H, I)   w_hh (4H, P)
#   b_ih, b_hh (4H,)    or NULL                    w_hr (P, H), or NULL when P == H
#   h0 (B, P), c0 (B, H)   initial states, NULL for zeros
#   y        (N, ldy)   h_t of every row, written to P columns from ``y``
#   h_n (B, P), c_n (B, H)   each row's state after its own last step
#   training buffers (NULL for inference): gates (N, 4H), cs (N, H), c_prevs (N, H),
#       h_prevs (N, P), rs (N, H) (only with a projection)
#   work     lstm_workspace_size(T, B, H, P, training) elements of scratch
#
# ``reverse`` walks each sequence from its own last step.  num_threads > 1 opens an
# OpenMP team; BLAS should then be single-threaded (fastrnn's layers arrange it): the
# team calls BLAS from every thread, and BLAS threads on top would oversubscribe the
# cores (the results are the same).  Calls are reentrant: any number may run at once,
# from any threads, each with its own workspace and output buffers.
# Kernels never touch Python objects and never fail: callers check sizes (every size
# and leading dimension must fit a C int for BLAS).
# Their one allocation, once per call and freed before they return: a copy of the
# recurrent weights packed for the per-step product, made when the sequence has at
# least 16 packed rows (shorter ones, a stream's single step among them, call BLAS
# per step instead, as does a call whose malloc fails).
from cython cimport floating

cdef Py_ssize_t lstm_workspace_size(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t P,
                                    bint training) noexcept nogil

cdef Py_ssize_t lstm_backward_workspace_size(Py_ssize_t N, Py_ssize_t B, Py_ssize_t H,
                                             Py_ssize_t P) noexcept nogil

cdef void lstm_forward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const Py_ssize_t* batch_sizes, bint reverse,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* w_hr,
        const floating* h0, const floating* c0,
        floating* y, Py_ssize_t ldy, floating* h_n, floating* c_n,
        floating* gates, floating* cs, floating* c_prevs, floating* h_prevs,
        floating* rs, floating* work, int num_threads) noexcept nogil

# BPTT over a training forward's buffers (``gates`` is overwritten: one backward
# per forward).  dy (N, ldy), dh_n (B, P), dc_n (B, H) may be NULL (zeros).
# Writes dx (N, I) (added to when accumulate_dx), dh0 (B, P), dc0 (B, H),
# dw_ih (4H, I), dw_hh (4H, P), db (4H,) (the gradient of b_ih and b_hh alike;
# NULL to skip) and dw_hr (P, H) with a projection.  ``work`` holds
# lstm_backward_workspace_size(N, B, H, P) elements.
cdef void lstm_backward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const Py_ssize_t* batch_sizes, bint reverse,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* w_hr, floating* gates, const floating* cs,
        const floating* c_prevs, const floating* h_prevs, const floating* rs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n, const floating* dc_n,
        floating* dx, bint accumulate_dx, floating* dh0, floating* dc0,
        floating* dw_ih, floating* dw_hh, floating* db, floating* dw_hr,
        floating* work, int num_threads) noexcept nogil
