# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused Elman RNN kernels: inference forward, training forward and backward (BPTT).

h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act one of tanh, relu, sigmoid.
Layouts as in fastrnn.kernels.lstm, with G = H:

    x (N, I);  w_ih (H, I), w_hh (H, H), b_ih, b_hh (H,);  h0, h_n (B, H);  y (N, ldy)
    hs       (N, H)   training only: h_t (the activation's output)
    h_prevs  (N, H)   training only: h_{t-1}
"""

from cython cimport floating
from cython.parallel cimport parallel

from fastrnn.kernels.common cimport (
    omp_get_thread_num, omp_get_num_threads, fastrnn_team_barrier, fastrnn_team_sync,
    fastrnn_block_free,
    fastrnn_flush_denormals, fastrnn_restore_fp_mode, split_units, sigmoid,
    tanh_, total_rows, active_rows, rows_finishing_from, combine_bias, column_sums,
    copy_block, chunk_steps, chunk_first_row, publish_step, rnn_row, rnn_grad_row,
    fastrnn_packed_size, alloc_packed, pack_weights, step_gemm, rows_product, recurrent_gemm,
    weight_grad, input_grad, input_grad_packed_size, projection_packed_size, projection_panels,
    project_inputs)

ACTIVATIONS = {"tanh": ACT_TANH, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID}


cdef Py_ssize_t rnn_workspace_size(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                                   bint training) noexcept nogil:
    """Elements of scratch for rnn_forward: two h buffers, the projection chunk in
    inference, and last the projection's bias row b_ih + b_hh (H)."""
    if training:
        return 2 * B * H + H
    return 2 * B * H + chunk_steps(T, B, 0) * B * H + H



cdef void _forward_body(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, int activation,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* h0,
        floating* y, Py_ssize_t ldy, floating* h_n,
        floating* hs, floating* h_prevs, floating* work, floating* packed,
        floating* packed_ih, int tid, int nt, fastrnn_team_sync* sync) noexcept nogil:
    cdef bint training = hs != NULL
    cdef bint up = not reverse
    cdef bint panels = projection_panels(T, B, training)
    cdef Py_ssize_t j0, j1, hk, s, t, b, j, bs, finish, row, base
    cdef Py_ssize_t s_chunk, n_chunk, chunk_n
    cdef Py_ssize_t n_rows = total_rows(T, B, batch_sizes)
    cdef Py_ssize_t off = 0 if up else n_rows
    cdef Py_ssize_t steps = chunk_steps(T, B, training)
    cdef floating* h_cur = work
    cdef floating* h_next = work + B * H
    cdef floating* h_swap
    cdef floating* xp = hs if training else work + 2 * B * H
    cdef floating* xp_row
    # b_ih + b_hh, which the input projection adds (the last H elements of work).
    cdef floating* bias = (NULL if b_ih == NULL and b_hh == NULL else
                           work + rnn_workspace_size(T, B, H, training) - H)

    # A few rows step on W_hh as the layer holds it, unpacked.
    cdef bint rows_hh = rows_product(B)

    cdef unsigned int fp_mode = fastrnn_flush_denormals()
    cdef int sense = 0
    split_units(H, tid, nt, &j0, &j1)
    hk = j1 - j0
    if not rows_hh:
        pack_weights(w_hh, True, H, 1, H, j0, j1, packed)  # W_hh's rows of the thread's units
    if not panels:
        pack_weights(w_ih, True, I, 1, H, j0, j1, packed_ih)
    if bias != NULL:
        combine_bias(bias, j0, j1, b_ih, b_hh)
    copy_block(h_cur, H, h0, H, B, j0, j1)
    copy_block(h_next, H, h0, H, B, j0, j1)
    fastrnn_team_barrier(sync, nt, &sense)

    s_chunk = 0
    while s_chunk < T:
        n_chunk = min(steps, T - s_chunk)
        base = chunk_first_row(T, B, batch_sizes, up, s_chunk, n_chunk, off, &chunk_n)
        xp_row = xp if not training else xp + base * H
        project_inputs(chunk_n, I, x + base * I, w_ih, packed_ih, panels, 1, H, j0, j1,
                       xp_row, H, bias, tid)

        for s in range(s_chunk, s_chunk + n_chunk):
            t = s if up else T - 1 - s
            bs = active_rows(B, batch_sizes, t)
            if not up:
                off -= bs
            row = off
            xp_row = xp + (row if training else row - base) * H
            recurrent_gemm(rows_hh, bs, H, h_cur, H, w_hh, packed, 1, H, j0, j1, xp_row, H,
                           True)
            finish = rows_finishing_from(T, B, batch_sizes, t, up, bs)
            for b in range(bs):
                rnn_row(xp_row + b * H, h_next + b * H, j0, j1, activation, training)
            publish_step(h_next, h_cur, H, H, bs, finish, j0, j1, y + row * ldy, ldy,
                         h_prevs + row * H if training else NULL, h_n)
            if up:
                off += bs
            h_swap = h_cur
            h_cur = h_next
            h_next = h_swap
            fastrnn_team_barrier(sync, nt, &sense)
        s_chunk += n_chunk
    fastrnn_restore_fp_mode(fp_mode)


cdef void rnn_forward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, int activation,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* h0,
        floating* y, Py_ssize_t ldy, floating* h_n,
        floating* hs, floating* h_prevs, floating* work, int num_threads) noexcept nogil:
    """Elman RNN over one direction of a packed sequence (see the module docstring).

    ``activation``: 0 tanh, 1 relu, 2 sigmoid.  Inference when ``hs`` is NULL;
    training otherwise.  ``work`` holds rnn_workspace_size(T, B, H, training).
    """
    cdef fastrnn_team_sync sync
    sync.count = 0
    sync.sense = 0
    cdef floating* packed = alloc_packed(x, T * B, fastrnn_packed_size(1, H, H))
    # W_ih packed for the input projection (as in fastrnn.kernels.lstm), or NULL.
    cdef floating* packed_ih = alloc_packed(x, T * B, projection_packed_size(
        1, H, I, projection_panels(T, B, hs != NULL), num_threads if num_threads > 1 else 1))
    if num_threads <= 1:
        _forward_body(T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh, b_ih,
                      b_hh, h0, y, ldy, h_n, hs, h_prevs, work, packed, packed_ih, 0, 1,
                      &sync)
    else:
        with parallel(num_threads=num_threads):
            _forward_body(T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh, b_ih,
                          b_hh, h0, y, ldy, h_n, hs, h_prevs, work, packed, packed_ih,
                          omp_get_thread_num(), omp_get_num_threads(), &sync)
    fastrnn_block_free(packed)
    fastrnn_block_free(packed_ih)


cdef void _backward_body(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, int activation,
        const floating* x, const floating* w_ih, const floating* w_hh,
        floating* hs, const floating* h_prevs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n,
        floating* dx, bint accumulate_dx, floating* dh0,
        floating* dw_ih, floating* dw_hh, floating* db, floating* packed, int tid, int nt,
        fastrnn_team_sync* sync) noexcept nogil:
    cdef bint up = reverse
    cdef Py_ssize_t j0, j1, hk, i0, i1, s, t, b, j, bs, row
    cdef Py_ssize_t n_rows = total_rows(T, B, batch_sizes)
    cdef Py_ssize_t off = 0 if up else n_rows
    cdef floating* d_row
    # W_hh packed by the thread's units, then W_ih by its inputs (or NULL).
    cdef floating* packed_ih = (packed + fastrnn_packed_size(1, H, H)
                                if packed != NULL and input_grad_packed_size(I, H) else NULL)

    cdef unsigned int fp_mode = fastrnn_flush_denormals()
    cdef int sense = 0
    split_units(H, tid, nt, &j0, &j1)
    hk = j1 - j0
    pack_weights(w_hh, False, H, 1, H, j0, j1, packed)    # W_hh's columns of the thread's units
    split_units(I, tid, nt, &i0, &i1)
    pack_weights(w_ih, False, H, 1, I, i0, i1, packed_ih)
    copy_block(dh0, H, dh_n, H, B, j0, j1)
    if db != NULL:
        column_sums(db, hs, 0, H, j0, j1, False)

    for s in range(T):
        t = s if up else T - 1 - s
        bs = active_rows(B, batch_sizes, t)
        if not up:
            off -= bs
        row = off
        d_row = hs + row * H
        for b in range(bs):
            rnn_grad_row(d_row + b * H, dh0 + b * H,
                         <const floating*>NULL if dy == NULL else dy + (row + b) * ldy, j0, j1,
                         activation)
        if db != NULL:
            column_sums(db, d_row, bs, H, j0, j1, True)
        fastrnn_team_barrier(sync, nt, &sense)
        step_gemm(bs, H, d_row, H, w_hh, False, packed, 1, H, j0, j1, dh0, H, False, NULL)
        if up:
            off += bs
    fastrnn_team_barrier(sync, nt, &sense)

    weight_grad(n_rows, H, I, hs, H, x, I, dw_ih, I, tid, nt)
    weight_grad(n_rows, H, H, hs, H, h_prevs, H, dw_hh, H, tid, nt)
    input_grad(n_rows, I, H, hs, w_ih, packed_ih, dx, accumulate_dx, tid, nt)
    fastrnn_restore_fp_mode(fp_mode)


cdef void rnn_backward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, int activation,
        const floating* x, const floating* w_ih, const floating* w_hh,
        floating* hs, const floating* h_prevs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n,
        floating* dx, bint accumulate_dx, floating* dh0,
        floating* dw_ih, floating* dw_hh, floating* db, int num_threads) noexcept nogil:
    """BPTT of rnn_forward (training) over the same direction.

    dy (N, ldy) and dh_n (B, H) may be NULL (zeros).  Writes dx (N, I) (added to
    it when accumulate_dx), dh0 (B, H), dw_ih (H, I), dw_hh (H, H) and db (H,)
    (the gradient of b_ih and b_hh alike; NULL to skip).  ``hs`` is overwritten
    with the pre-activation gradients: a cache serves one backward.
    """
    cdef fastrnn_team_sync sync
    sync.count = 0
    sync.sense = 0
    cdef floating* packed = alloc_packed(x, total_rows(T, B, batch_sizes),
                                         fastrnn_packed_size(1, H, H)
                                         + input_grad_packed_size(I, H))
    if num_threads <= 1:
        _backward_body(T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh, hs,
                       h_prevs, dy, ldy, dh_n, dx, accumulate_dx, dh0, dw_ih, dw_hh, db,
                       packed, 0, 1, &sync)
    else:
        with parallel(num_threads=num_threads):
            _backward_body(T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh, hs,
                           h_prevs, dy, ldy, dh_n, dx, accumulate_dx, dh0, dw_ih, dw_hh, db,
                           packed, omp_get_thread_num(), omp_get_num_threads(), &sync)
    fastrnn_block_free(packed)


# ----------------------------------------------------------------- Python entry points
# Thin wrappers for fastrnn's layers (see fastrnn.kernels.lstm).

import numpy as np
cimport numpy as cnp
from fastrnn._scratch import POOL
from fastrnn.kernels._args cimport ptr, cptr, sizes_ptr, is_double, packed_rows, mul, check_dims

cnp.import_array()


cdef int _activation(object nonlinearity) except -1:
    if nonlinearity not in ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, "
                         f"got {nonlinearity!r}")
    return ACTIVATIONS[nonlinearity]


def forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
            bint reverse, nonlinearity, x, w_ih, w_hh, b_ih, b_hh, h0, y,
            Py_ssize_t y_col, Py_ssize_t ldy, h_n, hs, h_prevs, int num_threads):
    """Run rnn_forward; training when ``hs`` is not empty."""
    cdef int activation = _activation(nonlinearity)
    if is_double(x):
        _forward[double](T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh,
                         b_ih, b_hh, h0, y, y_col, ldy, h_n, hs, h_prevs, num_threads)
    else:
        _forward[float](T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh,
                        b_ih, b_hh, h0, y, y_col, ldy, h_n, hs, h_prevs, num_threads)


cdef int _forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
                  bint reverse, int activation, x, w_ih, w_hh, b_ih, b_hh, h0, y,
                  Py_ssize_t y_col, Py_ssize_t ldy, h_n, hs, h_prevs, int num_threads,
                  floating* tag=NULL) except -1:
    cptr(x, 0, "x", tag)
    check_dims(T, B, I, H, H, y_col, ldy)
    cdef const Py_ssize_t* p_bs = sizes_ptr(batch_sizes)
    cdef Py_ssize_t n = packed_rows(p_bs, batch_sizes, T, B)
    cdef floating* p_hs = ptr(hs, 0, "hs", tag)
    cdef bint training = p_hs != NULL
    cdef Py_ssize_t per_row = n if training else 0
    ptr(hs, mul(per_row, H), "hs", tag)
    cdef floating* p_h_prevs = ptr(h_prevs, mul(per_row, H), "h_prevs", tag)
    cdef const floating* p_x = cptr(x, mul(n, I), "x", tag)
    cdef const floating* p_w_ih = cptr(w_ih, mul(H, I), "w_ih", tag)
    cdef const floating* p_w_hh = cptr(w_hh, mul(H, H), "w_hh", tag)
    cdef const floating* p_b_ih = cptr(b_ih, H, "b_ih", tag, True)
    cdef const floating* p_b_hh = cptr(b_hh, H, "b_hh", tag, True)
    cdef const floating* p_h0 = cptr(h0, mul(B, H), "h0", tag, True)
    cdef floating* p_y = ptr(y, mul(n, ldy), "y", tag) + y_col
    cdef floating* p_h_n = ptr(h_n, mul(B, H), "h_n", tag)
    work_arr = POOL.take(rnn_workspace_size(T, B, H, training),
                         np.float64 if floating is double else np.float32)
    cdef floating* p_work = ptr(work_arr, 0, "work", tag)
    with nogil:
        rnn_forward(T, B, I, H, p_bs, reverse, activation, p_x, p_w_ih, p_w_hh, p_b_ih,
                    p_b_hh, p_h0, p_y, ldy, p_h_n, p_hs, p_h_prevs, p_work, num_threads)
    POOL.give(work_arr)
    return 0


def backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
             bint reverse, nonlinearity, x, w_ih, w_hh, hs, h_prevs, dy,
             Py_ssize_t dy_col, Py_ssize_t ldy, dh_n, dx, bint accumulate_dx, dh0, dw_ih,
             dw_hh, db, int num_threads):
    """Run rnn_backward on the buffers of a training forward."""
    cdef int activation = _activation(nonlinearity)
    if is_double(x):
        _backward[double](T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh, hs,
                          h_prevs, dy, dy_col, ldy, dh_n, dx, accumulate_dx, dh0, dw_ih,
                          dw_hh, db, num_threads)
    else:
        _backward[float](T, B, I, H, batch_sizes, reverse, activation, x, w_ih, w_hh, hs,
                         h_prevs, dy, dy_col, ldy, dh_n, dx, accumulate_dx, dh0, dw_ih,
                         dw_hh, db, num_threads)


cdef int _backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
                   bint reverse, int activation, x, w_ih, w_hh, hs, h_prevs, dy,
                   Py_ssize_t dy_col, Py_ssize_t ldy, dh_n, dx, bint accumulate_dx, dh0,
                   dw_ih, dw_hh, db, int num_threads, floating* tag=NULL) except -1:
    cptr(x, 0, "x", tag)
    check_dims(T, B, I, H, H, 0, H)
    cdef const Py_ssize_t* p_bs = sizes_ptr(batch_sizes)
    cdef Py_ssize_t n = packed_rows(p_bs, batch_sizes, T, B)
    cdef const floating* p_x = cptr(x, mul(n, I), "x", tag)
    cdef const floating* p_w_ih = cptr(w_ih, mul(H, I), "w_ih", tag)
    cdef const floating* p_w_hh = cptr(w_hh, mul(H, H), "w_hh", tag)
    cdef floating* p_hs = ptr(hs, mul(n, H), "hs", tag)
    cdef const floating* p_h_prevs = cptr(h_prevs, mul(n, H), "h_prevs", tag)
    cdef const floating* p_dy = cptr(dy, 0, "dy", tag)
    if p_dy != NULL:
        check_dims(T, B, I, H, H, dy_col, ldy)
        cptr(dy, mul(n, ldy), "dy", tag)
        p_dy = p_dy + dy_col
    cdef const floating* p_dh_n = cptr(dh_n, mul(B, H), "dh_n", tag, True)
    cdef floating* p_dx = ptr(dx, mul(n, I), "dx", tag)
    cdef floating* p_dh0 = ptr(dh0, mul(B, H), "dh0", tag)
    cdef floating* p_dw_ih = ptr(dw_ih, mul(H, I), "dw_ih", tag)
    cdef floating* p_dw_hh = ptr(dw_hh, mul(H, H), "dw_hh", tag)
    cdef floating* p_db = ptr(db, H, "db", tag, True)
    with nogil:
        rnn_backward(T, B, I, H, p_bs, reverse, activation, p_x, p_w_ih, p_w_hh, p_hs,
                     p_h_prevs, p_dy, ldy, p_dh_n, p_dx, accumulate_dx, p_dh0, p_dw_ih,
                     p_dw_hh, p_db, num_threads)
    return 0
