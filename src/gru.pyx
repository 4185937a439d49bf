# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused GRU kernels: inference forward, training forward and backward (BPTT).

Layouts as in fastrnn.kernels.lstm, with gates in torch's order r, z, n (G = 3H):

    x        (N, I)   packed input rows;    w_ih (3H, I), w_hh (3H, H), b_ih, b_hh (3H,)
    h0       (B, H);  y (N, ldy);  h_n (B, H)
    gates    (N, 3H)  training only: post-activation r, z, n
    hns      (N, H)   training only: W_hn h_{t-1} + b_hn (reset_after) or r * h_{t-1}
    h_prevs  (N, H)   training only: h_{t-1}

reset_after=True:  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   (torch, cuDNN, Keras)
reset_after=False: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)   (Cho et al., ONNX lbr=0)
h' = (1 - z) * n + z * h.  Threads as in fastrnn.kernels.lstm; reset_after=False needs all
of r * h before its n GEMM, so, split by units, it takes a second barrier per step
(split by rows, where split_batch_fits() says so, none).
"""

from cython cimport floating
from cython.parallel cimport parallel

from fastrnn.kernels.common cimport (
    omp_get_thread_num, omp_get_num_threads, fastrnn_team_barrier, fastrnn_team_sync,
    fastrnn_block_free,
    fastrnn_flush_denormals, fastrnn_restore_fp_mode, split_units, sigmoid,
    tanh_, total_rows, active_rows, rows_finishing_from, combine_bias, column_sums,
    copy_block, chunk_steps, chunk_first_row, publish_step, gru_row, gru_rz_row,
    gru_n_row, gru_grad_row, gru_rh_grad_row, weight_grad, fastrnn_packed_size,
    alloc_packed, gate_packed_size, pack_weights, step_gemm, rows_product, recurrent_gemm, input_grad,
    input_grad_packed_size, projection_packed_size, projection_panels,
    project_inputs, split_batch, batch_split_pays, columns_split_evener)


cdef inline bint split_batch_fits(Py_ssize_t B, Py_ssize_t H, int nt,
                                  size_t item) noexcept nogil:
    """Whether a team of nt threads splits the batch (batch_split_pays) rather than
    the hidden units, every thread stepping all units of its rows on W_hh packed once
    for all; the input projection is still shared by units, a barrier after it.
    Measured as the LSTM's (fastrnn.kernels.lstm.split_batch_fits), GRU(H, H):
    inference at hidden 128 0.92x, 0.84x, 0.90x the time at batch 8, 32, 64, at
    hidden 256 1.02x, 0.91x, 0.99x; forward_train + backward 0.95-1.05x; GRU(512,
    512) (W_hh 3 MB, beyond the limit) 1.0-1.17x in inference.  (The Elman RNN,
    whose steps are cheaper, measured even, 0.91-1.11x: it splits the units.)"""
    return batch_split_pays(B, 3 * H * H * <Py_ssize_t>item, nt)


cdef Py_ssize_t gru_workspace_size(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H,
                                   bint training) noexcept nogil:
    """Elements of scratch for gru_forward: two h buffers, two (B, H) scratch
    blocks for the n gate, in inference the input projection chunk, and last the
    projection's bias row (3H: b_ir + b_hr, b_iz + b_hz, b_in)."""
    if training:
        return 4 * B * H + 3 * H
    return 4 * B * H + chunk_steps(T, B, 0) * B * 3 * H + 3 * H


cdef Py_ssize_t gru_backward_workspace_size(Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    """Elements of scratch for gru_backward: d(r * h) of one step."""
    return B * H



cdef void _forward_body(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, bint reset_after,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* h0,
        floating* y, Py_ssize_t ldy, floating* h_n,
        floating* gates, floating* hns, floating* h_prevs,
        floating* work, floating* packed, floating* packed_ih, bint by_batch, int tid,
        int nt, fastrnn_team_sync* sync) noexcept nogil:
    cdef bint training = gates != NULL
    cdef bint up = not reverse
    cdef bint panels = projection_panels(T, B, training)
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t j0, j1, hk, g, s, t, b, j, bs, finish, row, base, k
    cdef Py_ssize_t s_chunk, n_chunk, chunk_n
    cdef Py_ssize_t n_rows = total_rows(T, B, batch_sizes)
    cdef Py_ssize_t off = 0 if up else n_rows
    cdef Py_ssize_t steps = chunk_steps(T, B, training)
    # The thread's rows [r0, r1) and, at each step, its active ones [m0, m1); the
    # units it steps, [k0, k1) (all of them when the team splits the batch); its
    # units of the input projection are [j0, j1) either way.
    cdef Py_ssize_t r0 = 0, r1 = B, m0, m1, k0, k1, q0, q1, x_lo, x_hi, x_gates, x_width
    cdef floating* h_cur = work
    cdef floating* h_next = work + B * H
    cdef floating* h_swap
    cdef floating* hn_scratch = work + 2 * B * H     # W_hn h (+ b_hn) or W_hn (r h)
    cdef floating* rh_scratch = work + 3 * B * H     # r * h, inference with reset_after=False
    cdef floating* xp = gates if training else work + 4 * B * H
    cdef floating* xp_row
    cdef floating* hn_t
    cdef floating* rh_t
    cdef const floating* b_hn = b_hh + 2 * H if b_hh != NULL else NULL
    # The input projection's bias row (the last 3H elements of work): b_hr and b_hz
    # fold in, b_hn must stay inside r * (...).
    cdef floating* bias = (NULL if b_ih == NULL and b_hh == NULL else
                           work + gru_workspace_size(T, B, H, training) - G)
    # Packed W_hr, W_hz (the thread's r and z columns; all of them as one block of 2H
    # where the team splits the batch) and W_hn after room for two whole gates, or NULL.
    cdef floating* packed_rz = packed
    cdef floating* packed_n = (packed + 2 * gate_packed_size(packed, H, H)
                               if packed != NULL else NULL)

    # A few rows step on W_hh as the layer holds it, unpacked.
    cdef bint rows_hh = not by_batch and rows_product(B)

    cdef unsigned int fp_mode = fastrnn_flush_denormals()
    cdef int sense = 0
    split_units(H, tid, nt, &j0, &j1)
    hk = j1 - j0
    k0, k1 = j0, j1
    if by_batch:
        # Every thread reads every column: the threads pack shares of them, W_hr and
        # W_hz as one block of 2H columns (C's rows hold r and z side by side), so
        # that only its last group may be padded.
        split_units(2 * H, tid, nt, &q0, &q1)
        pack_weights(w_hh, True, H, 1, 2 * H, q0, q1, packed_rz)
        pack_weights(w_hh + 2 * H * H, True, H, 1, H, j0, j1, packed_n)
        split_batch(T, B, batch_sizes, tid, nt, &r0, &r1)
        k0, k1 = 0, H
    elif not rows_hh:
        pack_weights(w_hh, True, H, 2, H, j0, j1, packed_rz)
        pack_weights(w_hh + 2 * H * H, True, H, 1, H, j0, j1, packed_n)
    # The input projection's columns: as the LSTM's (_forward_body in lstm.pyx).  Measured
    # likewise (median of 8 rounds): inference at batch 5 / hidden 83 / input 522 0.94x
    # the time, batch 12 / 333 0.97x, batch 5 / 200 / 300 0.98x.
    if columns_split_evener(3, H, nt):
        split_units(G, tid, nt, &x_lo, &x_hi)
        x_gates, x_width = 1, G
    else:
        x_lo, x_hi, x_gates, x_width = j0, j1, 3, H
    if not panels:
        pack_weights(w_ih, True, I, x_gates, x_width, x_lo, x_hi, packed_ih)
    if bias != NULL:
        for g in range(3):
            combine_bias(bias, g * H + j0, g * H + j1, b_ih, b_hh if g < 2 else NULL)
    copy_block(h_cur, H, h0, H, B, j0, j1)
    copy_block(h_next, H, h0, H, B, j0, j1)
    fastrnn_team_barrier(sync, nt, &sense)

    s_chunk = 0
    while s_chunk < T:
        n_chunk = min(steps, T - s_chunk)
        base = chunk_first_row(T, B, batch_sizes, up, s_chunk, n_chunk, off, &chunk_n)
        xp_row = xp if not training else xp + base * G
        project_inputs(chunk_n, I, x + base * I, w_ih, packed_ih, panels, x_gates, x_width,
                       x_lo, x_hi, xp_row, G, bias, tid)
        if by_batch or x_gates == 1:
            fastrnn_team_barrier(sync, nt, &sense)      # the chunk's projection is whole

        for s in range(s_chunk, s_chunk + n_chunk):
            t = s if up else T - 1 - s
            bs = active_rows(B, batch_sizes, t)
            if not up:
                off -= bs
            row = off
            m0 = r0
            m1 = max(m0, min(r1, bs))
            xp_row = xp + (row if training else row - base) * G
            finish = rows_finishing_from(T, B, batch_sizes, t, up, bs)
            if by_batch:
                recurrent_gemm(False, m1 - m0, H, h_cur + m0 * H, H, w_hh, packed_rz, 1,
                               2 * H, 0, 2 * H, xp_row + m0 * G, G, True)
            else:
                recurrent_gemm(rows_hh, m1 - m0, H, h_cur + m0 * H, H, w_hh, packed_rz, 2,
                               H, k0, k1, xp_row + m0 * G, G, True)
            if reset_after:
                hn_t = hns + row * H if training else hn_scratch
                recurrent_gemm(rows_hh, m1 - m0, H, h_cur + m0 * H, H, w_hh + 2 * H * H,
                               packed_n, 1, H, k0, k1, hn_t + m0 * H, H, False)
                for b in range(m0, m1):
                    gru_row(xp_row + b * G, hn_t + b * H, b_hn, h_cur + b * H,
                            h_next + b * H, H, k0, k1, training)
            else:
                # r first: W_hn multiplies r * h, which needs all of the row's r.
                rh_t = hns + row * H if training else rh_scratch
                for b in range(m0, m1):
                    gru_rz_row(xp_row + b * G, h_cur + b * H, rh_t + b * H, H, k0, k1)
                if not by_batch:
                    fastrnn_team_barrier(sync, nt, &sense)
                recurrent_gemm(rows_hh, m1 - m0, H, rh_t + m0 * H, H, w_hh + 2 * H * H,
                               packed_n, 1, H, k0, k1, hn_scratch + m0 * H, H, False)
                for b in range(m0, m1):
                    gru_n_row(xp_row + b * G, hn_scratch + b * H, b_hn, h_cur + b * H,
                              h_next + b * H, H, k0, k1, training)
            publish_step(h_next + m0 * H, h_cur + m0 * H, H, H, m1 - m0, max(finish - m0, 0),
                         k0, k1, y + (row + m0) * ldy, ldy,
                         h_prevs + (row + m0) * H if training else NULL, h_n + m0 * H)
            if up:
                off += bs
            h_swap = h_cur
            h_cur = h_next
            h_next = h_swap
            if not by_batch:
                fastrnn_team_barrier(sync, nt, &sense)
        if by_batch and s_chunk + n_chunk < T:
            fastrnn_team_barrier(sync, nt, &sense)      # before the next chunk's projection
        s_chunk += n_chunk
    fastrnn_restore_fp_mode(fp_mode)


cdef void gru_forward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, bint reset_after,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* h0,
        floating* y, Py_ssize_t ldy, floating* h_n,
        floating* gates, floating* hns, floating* h_prevs,
        floating* work, int num_threads) noexcept nogil:
    """GRU over one direction of a packed sequence (layouts in the module docstring).

    Inference when ``gates`` is NULL; training otherwise, filling gates, hns and
    h_prevs for gru_backward.  ``work`` holds gru_workspace_size(T, B, H, training).
    """
    cdef fastrnn_team_sync sync
    sync.count = 0
    sync.sense = 0
    cdef floating* packed = alloc_packed(x, T * B, fastrnn_packed_size(3, H, H))
    # W_ih packed for the input projection (as in fastrnn.kernels.lstm), or NULL.
    cdef floating* packed_ih = alloc_packed(x, T * B, projection_packed_size(
        3, H, I, projection_panels(T, B, gates != NULL), num_threads if num_threads > 1 else 1))
    cdef bint by_batch = packed != NULL and split_batch_fits(B, H, num_threads,
                                                              sizeof(floating))
    if num_threads <= 1:
        _forward_body(T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh, b_ih,
                      b_hh, h0, y, ldy, h_n, gates, hns, h_prevs, work, packed, packed_ih,
                      False, 0, 1, &sync)
    else:
        with parallel(num_threads=num_threads):
            _forward_body(T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh,
                          b_ih, b_hh, h0, y, ldy, h_n, gates, hns, h_prevs, work, packed,
                          packed_ih, by_batch, omp_get_thread_num(), omp_get_num_threads(),
                          &sync)
    fastrnn_block_free(packed)
    fastrnn_block_free(packed_ih)


cdef inline void _gru_bias_grads(floating* db_ih, floating* db_hh, const floating* d,
                                 const floating* hns, Py_ssize_t rows, Py_ssize_t H,
                                 Py_ssize_t j0, Py_ssize_t j1, bint reset_after,
                                 bint accumulate) noexcept nogil:
    """db_ih, db_hh (+)= the biases' gradients over ``rows`` rows of gate gradients d
    (G wide) and hns (H wide), units [j0, j1) of each gate (either bias NULL: skipped)."""
    cdef Py_ssize_t g, G = 3 * H
    for g in range(3):
        if db_ih != NULL:
            column_sums(db_ih, d, rows, G, g * H + j0, g * H + j1, accumulate)
        if db_hh != NULL:
            if g == 2 and reset_after:      # b_hn's gradient is W_hn h's
                column_sums(db_hh + 2 * H, hns, rows, H, j0, j1, accumulate)
            else:
                column_sums(db_hh, d, rows, G, g * H + j0, g * H + j1, accumulate)


cdef void _backward_body(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, bint reset_after,
        const floating* x, const floating* w_ih, const floating* w_hh,
        floating* gates, floating* hns, const floating* h_prevs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n,
        floating* dx, bint accumulate_dx, floating* dh0,
        floating* dw_ih, floating* dw_hh, floating* db_ih, floating* db_hh,
        floating* work, floating* packed, bint by_batch, int tid, int nt,
        fastrnn_team_sync* sync) noexcept nogil:
    cdef bint up = reverse
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t j0, j1, hk, i0, i1, g, s, t, b, j, bs, row, k
    # As in _forward_body: the thread's rows, their active ones, the units it steps.
    cdef Py_ssize_t r0 = 0, r1 = B, m0, m1, k0, k1
    cdef Py_ssize_t n_rows = total_rows(T, B, batch_sizes)
    cdef Py_ssize_t off = 0 if up else n_rows
    cdef floating* d_row
    cdef floating* drh = work
    # Packed W_hr and W_hz stacked (2H, H) and W_hn (H, H), by the thread's units.
    cdef floating* packed_rz = packed
    cdef floating* packed_n = packed + fastrnn_packed_size(1, H, 2 * H) if packed != NULL else NULL
    cdef floating* packed_ih = (packed + fastrnn_packed_size(1, H, 3 * H)
                                if packed != NULL and input_grad_packed_size(I, G) else NULL)

    cdef unsigned int fp_mode = fastrnn_flush_denormals()
    cdef int sense = 0
    split_units(H, tid, nt, &j0, &j1)
    hk = j1 - j0
    pack_weights(w_hh, False, 2 * H, 1, H, j0, j1, packed_rz)
    pack_weights(w_hh + 2 * H * H, False, H, 1, H, j0, j1, packed_n)
    split_units(I, tid, nt, &i0, &i1)
    pack_weights(w_ih, False, G, 1, I, i0, i1, packed_ih)
    copy_block(dh0, H, dh_n, H, B, j0, j1)
    k0, k1 = j0, j1
    if by_batch:
        # As in _forward_body (the packings by output columns lie in one piece
        # whoever packed each share).
        fastrnn_team_barrier(sync, nt, &sense)
        split_batch(T, B, batch_sizes, tid, nt, &r0, &r1)
        k0, k1 = 0, H
    else:
        _gru_bias_grads(db_ih, db_hh, gates, hns, 0, H, j0, j1, reset_after, False)

    for s in range(T):
        t = s if up else T - 1 - s
        bs = active_rows(B, batch_sizes, t)
        if not up:
            off -= bs
        row = off
        m0 = r0
        m1 = max(m0, min(r1, bs))
        d_row = gates + row * G
        for b in range(m0, m1):
            gru_grad_row(d_row + b * G, hns + (row + b) * H, h_prevs + (row + b) * H,
                         dh0 + b * H,
                         <const floating*>NULL if dy == NULL else dy + (row + b) * ldy,
                         H, k0, k1, reset_after)
        if not by_batch:
            fastrnn_team_barrier(sync, nt, &sense)
        if reset_after:
            step_gemm(m1 - m0, H, hns + (row + m0) * H, H, w_hh + 2 * H * H, False, packed_n,
                      1, H, k0, k1, dh0 + m0 * H, H, True, NULL)
        else:
            # d(r h) = dan . W_hn, then r's gradient, which the r-z GEMM below needs.
            step_gemm(m1 - m0, H, d_row + m0 * G + 2 * H, G, w_hh + 2 * H * H, False,
                      packed_n, 1, H, k0, k1, drh + m0 * H, H, False, NULL)
            for b in range(m0, m1):
                gru_rh_grad_row(d_row + b * G, drh + b * H, h_prevs + (row + b) * H,
                                dh0 + b * H, k0, k1)
            if not by_batch:
                fastrnn_team_barrier(sync, nt, &sense)
        step_gemm(m1 - m0, 2 * H, d_row + m0 * G, G, w_hh, False, packed_rz, 1, H, k0, k1,
                  dh0 + m0 * H, H, True, NULL)
        if not by_batch:
            # The step's gate gradients of the thread's units are final: the biases'.
            _gru_bias_grads(db_ih, db_hh, d_row, hns + row * H, bs, H, j0, j1, reset_after,
                            True)
        if up:
            off += bs
    fastrnn_team_barrier(sync, nt, &sense)
    if by_batch:
        _gru_bias_grads(db_ih, db_hh, gates, hns, n_rows, H, j0, j1, reset_after, False)

    weight_grad(n_rows, G, I, gates, G, x, I, dw_ih, I, tid, nt)
    weight_grad(n_rows, 2 * H, H, gates, G, h_prevs, H, dw_hh, H, tid, nt)
    if reset_after:
        weight_grad(n_rows, H, H, hns, H, h_prevs, H, dw_hh + 2 * H * H, H, tid, nt)
    else:
        weight_grad(n_rows, H, H, gates + 2 * H, G, hns, H, dw_hh + 2 * H * H, H, tid, nt)
    input_grad(n_rows, I, G, gates, w_ih, packed_ih, dx, accumulate_dx, tid, nt)
    fastrnn_restore_fp_mode(fp_mode)


cdef void gru_backward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const Py_ssize_t* batch_sizes, bint reverse, bint reset_after,
        const floating* x, const floating* w_ih, const floating* w_hh,
        floating* gates, floating* hns, const floating* h_prevs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n,
        floating* dx, bint accumulate_dx, floating* dh0,
        floating* dw_ih, floating* dw_hh, floating* db_ih, floating* db_hh,
        floating* work, int num_threads) noexcept nogil:
    """BPTT of gru_forward (training) over the same direction.

    dy (N, ldy) and dh_n (B, H) may be NULL (zeros).  Writes dx (N, I) (added to
    it when accumulate_dx), dh0 (B, H), dw_ih (3H, I), dw_hh (3H, H), db_ih and
    db_hh (3H,) (NULL to skip).  ``gates`` and ``hns`` are overwritten with
    gradients: a cache serves one backward.  ``work`` holds
    gru_backward_workspace_size(B, H) elements.
    """
    cdef fastrnn_team_sync sync
    sync.count = 0
    sync.sense = 0
    cdef floating* packed = alloc_packed(x, total_rows(T, B, batch_sizes),
                                         fastrnn_packed_size(1, H, 3 * H)
                                         + input_grad_packed_size(I, 3 * H))
    cdef bint by_batch = packed != NULL and split_batch_fits(B, H, num_threads,
                                                              sizeof(floating))
    if num_threads <= 1:
        _backward_body(T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh, gates,
                       hns, h_prevs, dy, ldy, dh_n, dx, accumulate_dx, dh0, dw_ih, dw_hh,
                       db_ih, db_hh, work, packed, False, 0, 1, &sync)
    else:
        with parallel(num_threads=num_threads):
            _backward_body(T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh,
                           gates, hns, h_prevs, dy, ldy, dh_n, dx, accumulate_dx, dh0, dw_ih,
                           dw_hh, db_ih, db_hh, work, packed, by_batch, omp_get_thread_num(),
                           omp_get_num_threads(), &sync)
    fastrnn_block_free(packed)


# ----------------------------------------------------------------- Python entry points
# Thin wrappers for fastrnn's layers (see fastrnn.kernels.lstm).

import numpy as np
cimport numpy as cnp
from fastrnn._scratch import POOL
from fastrnn.kernels._args cimport ptr, cptr, sizes_ptr, is_double, packed_rows, mul, check_dims

cnp.import_array()


def splits_batch(Py_ssize_t B, Py_ssize_t H, int num_threads, itemsize):
    """Whether a team of num_threads splits the batch rather than the hidden units
    (for tests: they must reach both ways of sharing the work)."""
    return bool(split_batch_fits(B, H, num_threads, itemsize))


def forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
            bint reverse, bint reset_after, x, w_ih, w_hh, b_ih, b_hh, h0, y,
            Py_ssize_t y_col, Py_ssize_t ldy, h_n, gates, hns, h_prevs, int num_threads):
    """Run gru_forward; training when ``gates`` is not empty."""
    if is_double(x):
        _forward[double](T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh,
                         b_ih, b_hh, h0, y, y_col, ldy, h_n, gates, hns, h_prevs,
                         num_threads)
    else:
        _forward[float](T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh,
                        b_ih, b_hh, h0, y, y_col, ldy, h_n, gates, hns, h_prevs,
                        num_threads)


cdef int _forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
                  bint reverse, bint reset_after, x, w_ih, w_hh, b_ih, b_hh, h0, y,
                  Py_ssize_t y_col, Py_ssize_t ldy, h_n, gates, hns, h_prevs,
                  int num_threads, floating* tag=NULL) except -1:
    cptr(x, 0, "x", tag)
    check_dims(T, B, I, H, H, y_col, ldy)
    cdef const Py_ssize_t* p_bs = sizes_ptr(batch_sizes)
    cdef Py_ssize_t n = packed_rows(p_bs, batch_sizes, T, B)
    cdef floating* p_gates = ptr(gates, 0, "gates", tag)
    cdef bint training = p_gates != NULL
    cdef Py_ssize_t per_row = n if training else 0
    ptr(gates, mul(per_row, 3, H), "gates", tag)
    cdef floating* p_hns = ptr(hns, mul(per_row, H), "hns", tag)
    cdef floating* p_h_prevs = ptr(h_prevs, mul(per_row, H), "h_prevs", tag)
    cdef const floating* p_x = cptr(x, mul(n, I), "x", tag)
    cdef const floating* p_w_ih = cptr(w_ih, mul(3, H, I), "w_ih", tag)
    cdef const floating* p_w_hh = cptr(w_hh, mul(3, H, H), "w_hh", tag)
    cdef const floating* p_b_ih = cptr(b_ih, mul(3, H), "b_ih", tag, True)
    cdef const floating* p_b_hh = cptr(b_hh, mul(3, H), "b_hh", tag, True)
    cdef const floating* p_h0 = cptr(h0, mul(B, H), "h0", tag, True)
    cdef floating* p_y = ptr(y, mul(n, ldy), "y", tag) + y_col
    cdef floating* p_h_n = ptr(h_n, mul(B, H), "h_n", tag)
    work_arr = POOL.take(gru_workspace_size(T, B, H, training),
                         np.float64 if floating is double else np.float32)
    cdef floating* p_work = ptr(work_arr, 0, "work", tag)
    with nogil:
        gru_forward(T, B, I, H, p_bs, reverse, reset_after, p_x, p_w_ih, p_w_hh, p_b_ih,
                    p_b_hh, p_h0, p_y, ldy, p_h_n, p_gates, p_hns, p_h_prevs, p_work,
                    num_threads)
    POOL.give(work_arr)
    return 0


def backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
             bint reverse, bint reset_after, x, w_ih, w_hh, gates, hns, h_prevs, dy,
             Py_ssize_t dy_col, Py_ssize_t ldy, dh_n, dx, bint accumulate_dx, dh0, dw_ih,
             dw_hh, db_ih, db_hh, int num_threads):
    """Run gru_backward on the buffers of a training forward."""
    if is_double(x):
        _backward[double](T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh,
                          gates, hns, h_prevs, dy, dy_col, ldy, dh_n, dx, accumulate_dx,
                          dh0, dw_ih, dw_hh, db_ih, db_hh, num_threads)
    else:
        _backward[float](T, B, I, H, batch_sizes, reverse, reset_after, x, w_ih, w_hh,
                         gates, hns, h_prevs, dy, dy_col, ldy, dh_n, dx, accumulate_dx,
                         dh0, dw_ih, dw_hh, db_ih, db_hh, num_threads)


cdef int _backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, batch_sizes,
                   bint reverse, bint reset_after, x, w_ih, w_hh, gates, hns, h_prevs, dy,
                   Py_ssize_t dy_col, Py_ssize_t ldy, dh_n, dx, bint accumulate_dx, dh0,
                   dw_ih, dw_hh, db_ih, db_hh, int num_threads,
                   floating* tag=NULL) except -1:
    cptr(x, 0, "x", tag)
    check_dims(T, B, I, H, H, 0, H)
    cdef const Py_ssize_t* p_bs = sizes_ptr(batch_sizes)
    cdef Py_ssize_t n = packed_rows(p_bs, batch_sizes, T, B)
    cdef const floating* p_x = cptr(x, mul(n, I), "x", tag)
    cdef const floating* p_w_ih = cptr(w_ih, mul(3, H, I), "w_ih", tag)
    cdef const floating* p_w_hh = cptr(w_hh, mul(3, H, H), "w_hh", tag)
    cdef floating* p_gates = ptr(gates, mul(n, 3, H), "gates", tag)
    cdef floating* p_hns = ptr(hns, mul(n, H), "hns", tag)
    cdef const floating* p_h_prevs = cptr(h_prevs, mul(n, H), "h_prevs", tag)
    cdef const floating* p_dy = cptr(dy, 0, "dy", tag)
    if p_dy != NULL:
        check_dims(T, B, I, H, H, dy_col, ldy)
        cptr(dy, mul(n, ldy), "dy", tag)
        p_dy = p_dy + dy_col
    cdef const floating* p_dh_n = cptr(dh_n, mul(B, H), "dh_n", tag, True)
    cdef floating* p_dx = ptr(dx, mul(n, I), "dx", tag)
    cdef floating* p_dh0 = ptr(dh0, mul(B, H), "dh0", tag)
    cdef floating* p_dw_ih = ptr(dw_ih, mul(3, H, I), "dw_ih", tag)
    cdef floating* p_dw_hh = ptr(dw_hh, mul(3, H, H), "dw_hh", tag)
    cdef floating* p_db_ih = ptr(db_ih, mul(3, H), "db_ih", tag, True)
    cdef floating* p_db_hh = ptr(db_hh, mul(3, H), "db_hh", tag, True)
    work_arr = POOL.take(gru_backward_workspace_size(B, H),
                         np.float64 if floating is double else np.float32)
    cdef floating* p_work = ptr(work_arr, 0, "work", tag)
    with nogil:
        gru_backward(T, B, I, H, p_bs, reverse, reset_after, p_x, p_w_ih, p_w_hh, p_gates,
                     p_hns, p_h_prevs, p_dy, ldy, p_dh_n, p_dx, accumulate_dx, p_dh0,
                     p_dw_ih, p_dw_hh, p_db_ih, p_db_hh, p_work, num_threads)
    POOL.give(work_arr)
    return 0
