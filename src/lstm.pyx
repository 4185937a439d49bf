# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Fused LSTM kernels: inference forward, training forward and backward (BPTT).

Layouts (row-major, weights in torch's layout, gates in torch's order i, f, g, o):

    x        (N, I)      packed input rows: the rows of step t are the first
                         batch_sizes[t] sequences (sorted by decreasing length),
                         steps one after the other (torch's PackedSequence);
                         without batch_sizes (NULL), N = T * B, time-major.
    w_ih     (4H, I),  w_hh (4H, H),  b_ih, b_hh (4H,) or NULL
    w_hr     (P, H)      projection (torch's LSTMP, P = proj_size), or NULL and P = H
    h0 (B, P), c0 (B, H) states of the sorted rows (NULL: zeros)
    y        (N, ldy)    output rows (h_t), P columns from the given pointer
    h_n (B, P), c_n (B, H)  each row's state after its own last step
    gates    (N, 4H)     training only: post-activation i, f, g, o
    cs, c_prevs (N, H)   training only: c_t, c_{t-1}
    h_prevs  (N, P)      training only: h_{t-1}
    rs       (N, H)      training only, with a projection: o * tanh(c_t)

``reverse`` walks time from the end, each row starting at its own last step.

Threads: one OpenMP region spans the whole sequence.  Each thread owns a block
of hidden units for every step: it projects the inputs of those units itself,
computes their recurrent GEMM slice on its packed copy of the weights and runs
the fused elementwise pass on them; one barrier per step publishes the new h
(two with a projection, whose GEMM needs every unit's o * tanh(c)).  The inputs
are projected a chunk of steps at a time (project_inputs: on W_ih packed for the
micro-kernel where projection_packed_size() says so, whole or, where one chunk
takes every step, a panel at a time; else by BLAS), or, where stack_input()
says so, by each step's GEMM over the rows [x_t, h_{t-1}] against [W_ih W_hh]^T.
Where split_batch_fits() says so, the threads share the batch instead: each
carries its own rows through the whole sequence, every unit of them, and no
barrier stands between steps (backward likewise, until the weight gradients).
"""

from cython cimport floating
from cython.parallel cimport parallel

from fastrnn.kernels.common cimport (
    omp_get_thread_num, omp_get_num_threads, fastrnn_team_barrier, fastrnn_team_sync,
    fastrnn_block_free,
    fastrnn_flush_denormals, fastrnn_restore_fp_mode, split_units, sigmoid,
    tanh_, total_rows, active_rows, rows_finishing_from, combine_bias, column_sums,
    copy_block, chunk_steps, chunk_first_row, publish_step, lstm_row, lstm_grad_row,
    weight_grad, fastrnn_packed_size, alloc_packed, pack_weights, pack_stacked,
    step_gemm, input_grad, input_grad_packed_size, projection_packed_size, projection_panels,
    project_inputs,
    stacked_weight_grads,
    split_batch, batch_split_pays, BATCH_SPLIT_MIN_ROWS, rows_product, recurrent_gemm,
    columns_split_evener)


cdef Py_ssize_t lstm_workspace_size(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t P,
                                    bint training) noexcept nogil:
    """Elements of scratch for lstm_forward: two h buffers (B, P), with a projection
    o * tanh(c) of one step (B, H), in inference the input projection chunk, and last
    the gates' bias row b_ih + b_hh (4H)."""
    cdef Py_ssize_t n = 2 * B * P + (B * H if P != H else 0) + 4 * H
    if not training:
        n += chunk_steps(T, B, 0) * B * 4 * H
    return n


cdef Py_ssize_t lstm_backward_workspace_size(Py_ssize_t N, Py_ssize_t B, Py_ssize_t H,
                                             Py_ssize_t P) noexcept nogil:
    """Elements of scratch for lstm_backward: with a projection, the gradient
    reaching every h_t (N, P), kept for dW_hr, and d(o * tanh(c)) of one step (B, H)."""
    return N * P + B * H if P != H else 0


cdef inline Py_ssize_t stacked_packed_size(Py_ssize_t H, Py_ssize_t I,
                                           Py_ssize_t P) noexcept nogil:
    """Elements of [W_ih W_hh]^T packed for every thread (depth I + P)."""
    return fastrnn_packed_size(4, H, I + P)


cdef enum:
    # Stacked weights up to a core's L2 cache (1 MB on the Zen 5 measured): the batch
    # split pays from 4 rows a thread (BATCH_SPLIT_MIN_ROWS); up to half as much again,
    # from STACKED_L2_EDGE_ROWS; larger ones, streamed from L3 at every step, from
    # STACKED_STREAM_ROWS rows a thread while they stay below STACKED_STREAM_BYTES
    # (split_batch_fits).
    STACKED_L2_BYTES = 1024 * 1024
    STACKED_L2_EDGE_BYTES = 3 * 512 * 1024
    STACKED_L2_EDGE_ROWS = 5
    STACKED_STREAM_ROWS = 8
    STACKED_STREAM_BYTES = 3 * 1024 * 1024


cdef inline bint split_batch_fits(Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                                  int nt, size_t item) noexcept nogil:
    """Whether a team of nt threads splits the batch (split_batch), every thread
    stepping all units of its rows on [W_ih W_hh]^T packed once for all (the stacked
    projection, whatever stack_input says: projecting a chunk by BLAS first measured
    1.13-1.35x slower in inference at hidden 256, even in training).  Measured, two
    threads, LSTM(H, H), T = 50, one process, the two ways in alternating blocks (the
    median of 8 pairs): inference at hidden 128 0.84x the time at batch 8, 0.66x at
    32, 0.64x at 64; at hidden 256 0.94x, 0.70x, 0.75x; forward_train + backward
    0.75x, 0.77x (batch 8, 32) at hidden 128 and 0.87x, 0.85x, 0.90x (8, 32, 64) at
    256.  LSTM(512, 512) (8 MB stacked) measured even, LSTM(1024, 1024) 1.5-1.6x
    slower.  Not with a projection (proj_size), whose h is not the GEMM's input.

    Stacked weights much larger than a core's L2 cache (STACKED_L2_BYTES) come from
    L3 at every step; a thread with fewer than STACKED_STREAM_ROWS rows does too little
    work on them to hide that, and the team splits the units instead (each thread's
    columns then stay in its L2).  Measured on AMD Zen 5 (1 MB L2), inference, split
    by units against split by batch, once: LSTM(256) at batch 8 0.84x the time, batch
    10 0.91x, 16 0.89x, LSTM(240) at batch 8 (1.8 MB) 0.84x, LSTM(200) at batch 12
    (1.3 MB) 1.05x.  Measured again once the tiles took four groups and the bias (old
    and new builds in alternating processes, median of 4 pairs), the batch split now
    from 8 rows a thread up to 3 MB against the units split: inference LSTM(300, 200)
    at batch 24 0.93x the time, LSTM(240) at batch 24 0.94x, LSTM(256) at batch 16 and
    24 0.97-0.98x, LSTM(300) at batch 24-64 0.91-0.93x (2.9 MB); forward_train +
    backward 0.95x, 0.96x (LSTM(300, 200) batch 24, LSTM(256) batch 24), 0.97x
    (LSTM(300) batch 24-32), 1.01x (LSTM(256) batch 16).  At 5-6 rows a thread it
    measured 1.03-1.04x slower for LSTM(256) (batch 10-12), 0.96x for LSTM(300, 200)
    (1.6 MB); LSTM(320) (3.3 MB) and LSTM(350) at batch 16-32 even.  Between 1 and 1.5
    MB a thread of 4-5 rows split by batch, against the units split (alternating in
    one process, median of 8 rounds, inference): LSTM(300, 160) (1.2 MB) at batch 8
    and 9 1.08x the time, LSTM(200) at 8 1.04x, LSTM(300, 180) (1.4 MB) at 9 1.07x;
    at batch 10 even, 12-14 0.94-0.91x, hence STACKED_L2_EDGE_ROWS; training at batch
    8-9 even to 1.02x."""
    cdef Py_ssize_t weight_bytes = 4 * H * (I + P) * <Py_ssize_t>item
    return (P == H and nt > 1 and B >= BATCH_SPLIT_MIN_ROWS * nt
            and (weight_bytes <= STACKED_L2_BYTES
                 or (B >= STACKED_L2_EDGE_ROWS * nt and weight_bytes <= STACKED_L2_EDGE_BYTES)
                 or (B >= STACKED_STREAM_ROWS * nt and weight_bytes <= STACKED_STREAM_BYTES)))


cdef inline bint stack_input(Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                             int nt, size_t item) noexcept nogil:
    """Whether each step should project its own inputs, in the recurrent GEMM over
    [x_t, h_{t-1}], instead of one BLAS GEMM per chunk of steps beforehand.

    Stacked, the projection runs on the packed micro-kernel without BLAS's copies
    of x (and, when this was measured, without a pass over the chunk's gates to lay
    the biases down first, which the chunk's projection now adds in its tiles); it pays off while a thread's stacked weights stay in its L2 cache and the batch
    fills the micro-kernel's tiles (measured, one process, interleaved: LSTM(32, 128)
    at batch 32 / T = 64, forward_train + backward 0.93-0.95x the time, inference at
    hidden 128 0.93-0.99x at batch 32-64; at batch 8 even in inference, 1.00-1.10x in
    training).
    Not with a projection (proj_size), whose h is not the recurrent GEMM's input."""
    if P != H or B < 16:
        return False
    return 4 * (H // nt + 8) * (I + P) * <Py_ssize_t>item <= 512 * 1024



cdef void _forward_body(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const Py_ssize_t* batch_sizes, bint reverse,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* w_hr,
        const floating* h0, const floating* c0,
        floating* y, Py_ssize_t ldy, floating* h_n, floating* c_n,
        floating* gates, floating* cs, floating* c_prevs, floating* h_prevs,
        floating* rs, floating* work, floating* packed, floating* packed_ih, bint stacked,
        bint by_batch, int tid, int nt, fastrnn_team_sync* sync) noexcept nogil:
    cdef bint training = gates != NULL
    cdef bint up = not reverse
    cdef bint proj = w_hr != NULL
    cdef bint panels = projection_panels(T, B, training)
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t j0, j1, hk, p0, p1, pk, i0, i1, g, s, t, b, j, bs, finish, row, base
    cdef Py_ssize_t s_chunk, n_chunk, chunk_n, t_next, bs_next, q0, q1
    cdef Py_ssize_t x_lo, x_hi, x_gates, x_width
    # The rows this thread steps, [r0, r1) of the batch (by_batch), else all of them;
    # at each step the active ones, [m0, m1).
    cdef Py_ssize_t r0 = 0, r1 = B, m0, m1
    cdef Py_ssize_t n_rows = total_rows(T, B, batch_sizes)
    cdef Py_ssize_t off = 0 if up else n_rows
    cdef Py_ssize_t steps = T if stacked else chunk_steps(T, B, training)
    # Stacked, the step's GEMM multiplies rows [x_t, h_{t-1}] (ldh wide, the state
    # at column I) by [W_ih W_hh]^T, packed together after the weights.
    cdef Py_ssize_t ldh = I + P if stacked else P
    cdef Py_ssize_t ldr = H if proj else ldh
    cdef floating* states = packed + stacked_packed_size(H, I, P) if stacked else work
    cdef floating* h_cur = states + (I if stacked else 0)
    cdef floating* h_next = h_cur + B * ldh
    cdef floating* r_scratch = work + 2 * B * P
    cdef floating* h_swap
    cdef floating* xp = gates if training else work + 2 * B * P + (B * H if proj else 0)
    cdef floating* xp_row
    cdef floating* r_t
    # b_ih + b_hh, which the input projection adds (the last 4H elements of work).
    cdef floating* bias = (NULL if b_ih == NULL and b_hh == NULL else
                           work + lstm_workspace_size(T, B, H, P, training) - G)
    # Packed W_hh (the thread's gate columns; stacked under W_ih) and W_hr (its
    # output columns), or NULL.
    cdef floating* packed_hh = packed
    cdef floating* packed_hr = (packed + fastrnn_packed_size(4, H, P)
                                if packed != NULL and proj else NULL)

    # A few rows step on W_hh as the layer holds it (rows_gemm), unpacked.
    cdef bint rows_hh = not stacked and rows_product(B)

    cdef unsigned int fp_mode = fastrnn_flush_denormals()
    cdef int sense = 0
    split_units(H, tid, nt, &j0, &j1)
    split_units(P, tid, nt, &p0, &p1)    # the same split as j0, j1 without projection
    split_units(I, tid, nt, &i0, &i1)
    hk = j1 - j0
    pk = p1 - p0
    # An even share of the 4H gate columns, whole groups, taken as one block.
    split_units(G, tid, nt, &q0, &q1)
    # The input projection's columns: the even share where the units split unevenly.
    if columns_split_evener(4, H, nt):
        x_lo, x_hi, x_gates, x_width = q0, q1, 1, G
    else:
        x_lo, x_hi, x_gates, x_width = j0, j1, 4, H
    if by_batch:
        # Every thread reads all the columns: the threads pack shares of them.  The 4H
        # gate columns are packed as one block, groups running across the gates'
        # boundaries (C's rows hold the gates side by side), so no group is padded
        # unless 4H is not a multiple of the group width.
        pack_stacked(w_ih, I, w_hh, P, 1, G, q0, q1, packed_hh)
    elif stacked:
        pack_stacked(w_ih, I, w_hh, P, 4, H, j0, j1, packed_hh)
    elif not rows_hh:
        pack_weights(w_hh, True, P, 4, H, j0, j1, packed_hh)
    pack_weights(w_hr, True, H, 1, P, p0, p1, packed_hr)
    if bias != NULL:
        for g in range(4):
            combine_bias(bias, g * H + j0, g * H + j1, b_ih, b_hh)
    if not panels:
        pack_weights(w_ih, True, I, x_gates, x_width, x_lo, x_hi, packed_ih)
    # Both h buffers start at h0: rows that join late (reverse walk) read h0 from either.
    copy_block(h_cur, ldh, h0, P, B, p0, p1)
    copy_block(h_next, ldh, h0, P, B, p0, p1)
    copy_block(c_n, H, c0, H, B, j0, j1)     # c is updated in place; it ends as c_n
    if stacked:
        t = 0 if up else T - 1
        bs = active_rows(B, batch_sizes, t)
        copy_block(h_cur - I, ldh, x + (0 if up else n_rows - bs) * I, I, bs, i0, i1)
    fastrnn_team_barrier(sync, nt, &sense)
    if by_batch:
        # From here every thread works on all units of its own rows: the packed
        # weights (each thread packed a share) and the states are whole.
        split_batch(T, B, batch_sizes, tid, nt, &r0, &r1)
        j0, j1, p0, p1, i0, i1 = 0, H, 0, P, 0, I

    s_chunk = 0
    while s_chunk < T:
        n_chunk = min(steps, T - s_chunk)
        base = chunk_first_row(T, B, batch_sizes, up, s_chunk, n_chunk, off, &chunk_n)
        if not stacked:
            # Input projection of this chunk: this thread's columns of every gate, or
            # where its units split unevenly, an even share of the gate columns, which
            # the steps then add to after a barrier.  Measured (two threads, T = 50,
            # both builds alternating in one process, median of 8 rounds, twice): LSTM
            # inference at batch 5 / hidden 83 / input 522 0.96-0.98x the time, batch
            # 12 / 333 0.96-0.98x, batch 5 / 200 / 300 0.97-0.98x, batch 3 / 261 / 307
            # 0.98x; where the units split evenly (hidden 700 at batch 2), the other
            # thread's columns, read at every step, had cost 4%.
            xp_row = xp if not training else xp + base * G
            project_inputs(chunk_n, I, x + base * I, w_ih, packed_ih, panels, x_gates,
                           x_width, x_lo, x_hi, xp_row, G, bias, tid)
            if x_gates == 1:
                fastrnn_team_barrier(sync, nt, &sense)

        for s in range(s_chunk, s_chunk + n_chunk):
            t = s if up else T - 1 - s
            bs = active_rows(B, batch_sizes, t)
            if not up:
                off -= bs
            row = off
            m0 = r0
            m1 = max(m0, min(r1, bs))
            if stacked:
                # This step's whole input projection rides on its recurrent GEMM.
                xp_row = xp + row * G if training else xp
                if by_batch:
                    step_gemm(m1 - m0, I + P, h_cur - I + m0 * ldh, ldh, w_hh, True,
                              packed_hh, 1, G, 0, G, xp_row + m0 * G, G, False, bias)
                else:
                    step_gemm(m1 - m0, I + P, h_cur - I + m0 * ldh, ldh, w_hh, True,
                              packed_hh, 4, H, j0, j1, xp_row + m0 * G, G, False, bias)
            else:
                xp_row = xp + (row if training else row - base) * G
                recurrent_gemm(rows_hh, bs, P, h_cur, ldh, w_hh, packed_hh, 4, H, j0, j1,
                               xp_row, G, True)
            finish = rows_finishing_from(T, B, batch_sizes, t, up, bs)
            r_t = (rs + row * H if training else r_scratch) if proj else h_next
            for b in range(m0, m1):
                if training:
                    lstm_row(xp_row + b * G, c_n + b * H, r_t + b * ldr, cs + (row + b) * H,
                             c_prevs + (row + b) * H, H, j0, j1, True)
                else:
                    lstm_row(xp_row + b * G, c_n + b * H, r_t + b * ldr, <floating*>NULL,
                             <floating*>NULL, H, j0, j1, False)
            if proj:
                # h = W_hr (o * tanh c) needs every thread's units: sync, then own outputs.
                fastrnn_team_barrier(sync, nt, &sense)
                step_gemm(bs, H, r_t, H, w_hr, True, packed_hr, 1, P, p0, p1, h_next, ldh,
                          False, NULL)
            publish_step(h_next + m0 * ldh, h_cur + m0 * ldh, ldh, P, m1 - m0,
                         max(finish - m0, 0), p0, p1, y + (row + m0) * ldy, ldy,
                         h_prevs + (row + m0) * P if training else NULL, h_n + m0 * P)
            if stacked and s + 1 < T:
                # The next step's inputs go beside the state it will read.
                t_next = t + 1 if up else t - 1
                bs_next = active_rows(B, batch_sizes, t_next)
                m1 = max(m0, min(r1, bs_next))
                copy_block(h_next - I + m0 * ldh, ldh,
                           x + ((off + bs if up else off - bs_next) + m0) * I, I, m1 - m0,
                           i0, i1)
            if up:
                off += bs
            h_swap = h_cur
            h_cur = h_next
            h_next = h_swap
            if not by_batch:
                fastrnn_team_barrier(sync, nt, &sense)
        s_chunk += n_chunk
    fastrnn_restore_fp_mode(fp_mode)


cdef void lstm_forward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const Py_ssize_t* batch_sizes, bint reverse,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* b_ih, const floating* b_hh, const floating* w_hr,
        const floating* h0, const floating* c0,
        floating* y, Py_ssize_t ldy, floating* h_n, floating* c_n,
        floating* gates, floating* cs, floating* c_prevs, floating* h_prevs,
        floating* rs, floating* work, int num_threads) noexcept nogil:
    """LSTM over one direction of a packed sequence (layouts in the module docstring).

    Inference when ``gates`` is NULL; training otherwise, filling gates, cs,
    c_prevs, h_prevs (and rs with a projection) for lstm_backward.  ``work``
    holds lstm_workspace_size(T, B, H, P, training) elements.
    """
    cdef fastrnn_team_sync sync
    sync.count = 0
    sync.sense = 0
    cdef int nt = num_threads if num_threads > 1 else 1
    cdef bint by_batch = split_batch_fits(B, I, H, P, nt, sizeof(floating))
    cdef bint stacked = by_batch or stack_input(B, I, H, P, nt, sizeof(floating))
    cdef floating* packed = alloc_packed(
        x, T * B,
        stacked_packed_size(H, I, P) + 2 * B * (I + P) if stacked else
        fastrnn_packed_size(4, H, P) + (fastrnn_packed_size(1, P, H) if P != H else 0))
    stacked = stacked and packed != NULL
    by_batch = by_batch and stacked
    # W_ih packed for the chunks' input projection (the thread's gate columns), or NULL.
    # Its own block: added to the others, a large layer's would exceed glibc's largest
    # threshold for reusing freed memory (32 MB), and every call would fault its pages in.
    cdef floating* packed_ih = (alloc_packed(x, T * B, projection_packed_size(
        4, H, I, projection_panels(T, B, gates != NULL), num_threads if num_threads > 1 else 1))
                                if not stacked else NULL)
    if num_threads <= 1:
        _forward_body(T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, b_ih, b_hh, w_hr,
                      h0, c0, y, ldy, h_n, c_n, gates, cs, c_prevs, h_prevs, rs, work, packed,
                      packed_ih, stacked, False, 0, 1, &sync)
    else:
        with parallel(num_threads=num_threads):
            _forward_body(T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, b_ih, b_hh,
                          w_hr, h0, c0, y, ldy, h_n, c_n, gates, cs, c_prevs, h_prevs, rs,
                          work, packed, packed_ih, stacked, by_batch, omp_get_thread_num(),
                          omp_get_num_threads(), &sync)
    fastrnn_block_free(packed)
    fastrnn_block_free(packed_ih)


cdef void _backward_body(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const Py_ssize_t* batch_sizes, bint reverse,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* w_hr, floating* gates, const floating* cs,
        const floating* c_prevs, const floating* h_prevs, const floating* rs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n, const floating* dc_n,
        floating* dx, bint accumulate_dx, floating* dh0, floating* dc0,
        floating* dw_ih, floating* dw_hh, floating* db, floating* dw_hr,
        floating* work, floating* packed, bint by_batch, int tid,
        int nt, fastrnn_team_sync* sync) noexcept nogil:
    # Backward walks time the other way round from the forward pass.
    cdef bint up = reverse
    cdef bint proj = w_hr != NULL
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t j0, j1, hk, p0, p1, pk, g, s, t, b, j, bs, row, k
    cdef Py_ssize_t n_rows = total_rows(T, B, batch_sizes)
    cdef Py_ssize_t off = 0 if up else n_rows
    cdef floating* d_row
    cdef floating* dh_all = work                  # (N, P): gradient reaching each h_t
    cdef floating* dr = work + n_rows * P         # (B, H): gradient of o * tanh(c_t)
    cdef floating dh
    # Packed W_hh by its output columns (for dh_{t-1}) and W_hr by its units, or NULL.
    cdef floating* packed_hh = packed
    cdef floating* packed_hr = (packed + fastrnn_packed_size(1, P, G)
                                if packed != NULL and proj else NULL)
    cdef floating* packed_ih = (packed + fastrnn_packed_size(1, P, G)
                                + (fastrnn_packed_size(1, H, P) if proj else 0)
                                if packed != NULL and input_grad_packed_size(I, G) else NULL)
    cdef Py_ssize_t i0, i1
    # The rows this thread steps (as in _forward_body), and at each step its active ones.
    cdef Py_ssize_t r0 = 0, r1 = B, m0, m1

    cdef unsigned int fp_mode = fastrnn_flush_denormals()
    cdef int sense = 0
    split_units(H, tid, nt, &j0, &j1)
    split_units(P, tid, nt, &p0, &p1)
    hk = j1 - j0
    pk = p1 - p0
    pack_weights(w_hh, False, G, 1, P, p0, p1, packed_hh)
    pack_weights(w_hr, False, P, 1, H, j0, j1, packed_hr)
    split_units(I, tid, nt, &i0, &i1)
    pack_weights(w_ih, False, G, 1, I, i0, i1, packed_ih)
    # dh0 and dc0 carry the running state gradients; they end as the answers.
    copy_block(dh0, P, dh_n, P, B, p0, p1)
    copy_block(dc0, H, dc_n, H, B, j0, j1)
    if db != NULL:
        for g in range(4):
            column_sums(db, gates, 0, G, g * H + j0, g * H + j1, False)
    if by_batch:
        # As in _forward_body: each thread all units of its rows, no barrier per step
        # (W_hh packed by its columns lies in one piece whoever packed each share).
        fastrnn_team_barrier(sync, nt, &sense)
        split_batch(T, B, batch_sizes, tid, nt, &r0, &r1)
        j0, j1, p0, p1 = 0, H, 0, P

    for s in range(T):
        t = s if up else T - 1 - s
        bs = active_rows(B, batch_sizes, t)
        if not up:
            off -= bs
        row = off
        m0 = r0
        m1 = max(m0, min(r1, bs))
        d_row = gates + row * G
        if proj:
            for b in range(bs):
                for j in range(p0, p1):
                    dh = dh0[b * P + j]
                    if dy != NULL:
                        dh = dh + dy[(row + b) * ldy + j]
                    dh_all[(row + b) * P + j] = dh
            fastrnn_team_barrier(sync, nt, &sense)
            # d(o * tanh c)[:, own units] = dh_t . W_hr[:, own units]
            step_gemm(bs, P, dh_all + row * P, P, w_hr, False, packed_hr, 1, H, j0, j1,
                      dr, H, False, NULL)
        for b in range(m0, m1):
            # dh reaches h_t (dh0 + dy), or o * tanh(c_t) (dr) with a projection.
            lstm_grad_row(d_row + b * G, cs + (row + b) * H, c_prevs + (row + b) * H,
                          dr + b * H if proj else dh0 + b * H,
                          <const floating*>NULL if proj or dy == NULL else dy + (row + b) * ldy,
                          dc0 + b * H, H, j0, j1)
        if db != NULL and not by_batch:
            for g in range(4):
                column_sums(db, d_row, bs, G, g * H + j0, g * H + j1, True)
        if not by_batch:
            fastrnn_team_barrier(sync, nt, &sense)
        # dh_{t-1}[:, own outputs] = d_gates_t . W_hh[:, own outputs]
        step_gemm(m1 - m0, G, d_row + m0 * G, G, w_hh, False, packed_hh, 1, P, p0, p1,
                  dh0 + m0 * P, P, False, NULL)
        if up:
            off += bs
    fastrnn_team_barrier(sync, nt, &sense)

    # Whole-sequence weight gradients (the loop's last barrier made d_gates whole).
    stacked_weight_grads(n_rows, G, gates, G, x, I, h_prevs, P, dw_ih, dw_hh,
                         db if by_batch else NULL, tid, nt)
    if proj:
        weight_grad(n_rows, P, H, dh_all, P, rs, H, dw_hr, H, tid, nt)
    input_grad(n_rows, I, G, gates, w_ih, packed_ih, dx, accumulate_dx, tid, nt)
    fastrnn_restore_fp_mode(fp_mode)


cdef void lstm_backward(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const Py_ssize_t* batch_sizes, bint reverse,
        const floating* x, const floating* w_ih, const floating* w_hh,
        const floating* w_hr, floating* gates, const floating* cs,
        const floating* c_prevs, const floating* h_prevs, const floating* rs,
        const floating* dy, Py_ssize_t ldy, const floating* dh_n, const floating* dc_n,
        floating* dx, bint accumulate_dx, floating* dh0, floating* dc0,
        floating* dw_ih, floating* dw_hh, floating* db, floating* dw_hr,
        floating* work, int num_threads) noexcept nogil:
    """BPTT of lstm_forward (training) over the same direction.

    dy (N, ldy), dh_n (B, P) and dc_n (B, H) may be NULL (zeros).  Writes dx
    (N, I) (added to it when accumulate_dx), dh0 (B, P), dc0 (B, H), dw_ih
    (4H, I), dw_hh (4H, P), db (4H,) (the gradient of b_ih and of b_hh alike;
    NULL to skip) and, with a projection, dw_hr (P, H).  ``gates`` is
    overwritten with the gate gradients: a cache serves one backward.  ``work``
    holds lstm_backward_workspace_size(N, B, H, P) elements.
    """
    cdef fastrnn_team_sync sync
    sync.count = 0
    sync.sense = 0
    cdef floating* packed = alloc_packed(
        x, total_rows(T, B, batch_sizes),
        fastrnn_packed_size(1, P, 4 * H) + (fastrnn_packed_size(1, H, P) if P != H else 0)
        + input_grad_packed_size(I, 4 * H))
    cdef bint by_batch = packed != NULL and split_batch_fits(
        B, I, H, P, num_threads, sizeof(floating))
    if num_threads <= 1:
        _backward_body(T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, w_hr, gates, cs,
                       c_prevs, h_prevs, rs, dy, ldy, dh_n, dc_n, dx, accumulate_dx, dh0,
                       dc0, dw_ih, dw_hh, db, dw_hr, work, packed, False, 0, 1,
                       &sync)
    else:
        with parallel(num_threads=num_threads):
            _backward_body(T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, w_hr, gates,
                           cs, c_prevs, h_prevs, rs, dy, ldy, dh_n, dc_n, dx, accumulate_dx,
                           dh0, dc0, dw_ih, dw_hh, db, dw_hr, work, packed,
                           by_batch, omp_get_thread_num(), omp_get_num_threads(), &sync)
    fastrnn_block_free(packed)


# ----------------------------------------------------------------- Python entry points
# Thin wrappers for fastrnn's layers: arrays arrive C-contiguous, of one dtype and
# flattened; an empty array stands for an absent (NULL) buffer.  Each dispatches on
# the dtype to a typed body (see fastrnn/kernels/_args.pxd for why no memoryviews).

import numpy as np
cimport numpy as cnp
from fastrnn._scratch import POOL
from fastrnn.kernels._args cimport ptr, cptr, sizes_ptr, is_double, packed_rows, mul, check_dims

cnp.import_array()


def stacks_input(Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P, int num_threads,
                 itemsize):
    """Whether lstm_forward projects each step's inputs in its recurrent GEMM (for
    tests: they must reach both ways of projecting)."""
    return bool(stack_input(B, I, H, P, max(num_threads, 1), itemsize))


def splits_batch(Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P, int num_threads,
                 itemsize):
    """Whether a team of num_threads splits the batch rather than the hidden units
    (for tests: they must reach both ways of sharing the work)."""
    return bool(split_batch_fits(B, I, H, P, num_threads, itemsize))


def steps_on_rows(Py_ssize_t B):
    """Whether the forward walks of every cell multiply the recurrent weights as the
    layer holds them, unpacked (for tests: they must reach both products)."""
    return bool(rows_product(B))


def forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
            batch_sizes, bint reverse, x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0,
            y, Py_ssize_t y_col, Py_ssize_t ldy, h_n, c_n, gates, cs, c_prevs, h_prevs, rs,
            int num_threads):
    """Run lstm_forward; training when ``gates`` is not empty."""
    if is_double(x):
        _forward[double](T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, b_ih, b_hh,
                         w_hr, h0, c0, y, y_col, ldy, h_n, c_n, gates, cs, c_prevs,
                         h_prevs, rs, num_threads)
    else:
        _forward[float](T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, b_ih, b_hh,
                        w_hr, h0, c0, y, y_col, ldy, h_n, c_n, gates, cs, c_prevs,
                        h_prevs, rs, num_threads)


cdef int _forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                  batch_sizes, bint reverse, x, w_ih, w_hh, b_ih, b_hh, w_hr, h0, c0,
                  y, Py_ssize_t y_col, Py_ssize_t ldy, h_n, c_n, gates, cs, c_prevs,
                  h_prevs, rs, int num_threads, floating* tag=NULL) except -1:
    cptr(x, 0, "x", tag)
    check_dims(T, B, I, H, P, y_col, ldy)
    cdef const Py_ssize_t* p_bs = sizes_ptr(batch_sizes)
    cdef Py_ssize_t n = packed_rows(p_bs, batch_sizes, T, B)
    cdef floating* p_gates = ptr(gates, 0, "gates", tag)
    cdef bint training = p_gates != NULL
    cdef const floating* p_w_hr = cptr(w_hr, mul(P, H), "w_hr", tag, True)
    if (p_w_hr != NULL) != (P != H):
        raise ValueError("w_hr is given exactly when P != H")
    if training:
        ptr(gates, mul(n, 4, H), "gates", tag)
    cdef const floating* p_x = cptr(x, mul(n, I), "x", tag)
    cdef const floating* p_w_ih = cptr(w_ih, mul(4, H, I), "w_ih", tag)
    cdef const floating* p_w_hh = cptr(w_hh, mul(4, H, P), "w_hh", tag)
    cdef const floating* p_b_ih = cptr(b_ih, mul(4, H), "b_ih", tag, True)
    cdef const floating* p_b_hh = cptr(b_hh, mul(4, H), "b_hh", tag, True)
    cdef const floating* p_h0 = cptr(h0, mul(B, P), "h0", tag, True)
    cdef const floating* p_c0 = cptr(c0, mul(B, H), "c0", tag, True)
    cdef floating* p_y = ptr(y, mul(n, ldy), "y", tag) + y_col
    cdef floating* p_h_n = ptr(h_n, mul(B, P), "h_n", tag)
    cdef floating* p_c_n = ptr(c_n, mul(B, H), "c_n", tag)
    cdef Py_ssize_t per_row = n if training else 0
    cdef floating* p_cs = ptr(cs, mul(per_row, H), "cs", tag)
    cdef floating* p_c_prevs = ptr(c_prevs, mul(per_row, H), "c_prevs", tag)
    cdef floating* p_h_prevs = ptr(h_prevs, mul(per_row, P), "h_prevs", tag)
    cdef floating* p_rs = ptr(rs, mul(per_row, H) if p_w_hr != NULL else 0, "rs", tag)
    work_arr = POOL.take(lstm_workspace_size(T, B, H, P, training),
                         np.float64 if floating is double else np.float32)
    cdef floating* p_work = ptr(work_arr, 0, "work", tag)
    with nogil:
        lstm_forward(T, B, I, H, P, p_bs, reverse, p_x, p_w_ih, p_w_hh, p_b_ih, p_b_hh,
                     p_w_hr, p_h0, p_c0, p_y, ldy, p_h_n, p_c_n, p_gates, p_cs, p_c_prevs,
                     p_h_prevs, p_rs, p_work, num_threads)
    POOL.give(work_arr)
    return 0


def backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
             batch_sizes, bint reverse, x, w_ih, w_hh, w_hr, gates, cs, c_prevs, h_prevs,
             rs, dy, Py_ssize_t dy_col, Py_ssize_t ldy, dh_n, dc_n, dx, bint accumulate_dx,
             dh0, dc0, dw_ih, dw_hh, db, dw_hr, int num_threads):
    """Run lstm_backward on the buffers of a training forward."""
    if is_double(x):
        _backward[double](T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, w_hr, gates,
                          cs, c_prevs, h_prevs, rs, dy, dy_col, ldy, dh_n, dc_n, dx,
                          accumulate_dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, num_threads)
    else:
        _backward[float](T, B, I, H, P, batch_sizes, reverse, x, w_ih, w_hh, w_hr, gates,
                         cs, c_prevs, h_prevs, rs, dy, dy_col, ldy, dh_n, dc_n, dx,
                         accumulate_dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, num_threads)


cdef int _backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
                   batch_sizes, bint reverse, x, w_ih, w_hh, w_hr, gates, cs, c_prevs,
                   h_prevs, rs, dy, Py_ssize_t dy_col, Py_ssize_t ldy, dh_n, dc_n, dx,
                   bint accumulate_dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, int num_threads,
                   floating* tag=NULL) except -1:
    cptr(x, 0, "x", tag)
    check_dims(T, B, I, H, P, 0, P)
    cdef const Py_ssize_t* p_bs = sizes_ptr(batch_sizes)
    cdef Py_ssize_t n = packed_rows(p_bs, batch_sizes, T, B)
    cdef const floating* p_w_hr = cptr(w_hr, mul(P, H), "w_hr", tag, True)
    if (p_w_hr != NULL) != (P != H):
        raise ValueError("w_hr is given exactly when P != H")
    cdef bint proj = p_w_hr != NULL
    cdef const floating* p_x = cptr(x, mul(n, I), "x", tag)
    cdef const floating* p_w_ih = cptr(w_ih, mul(4, H, I), "w_ih", tag)
    cdef const floating* p_w_hh = cptr(w_hh, mul(4, H, P), "w_hh", tag)
    cdef floating* p_gates = ptr(gates, mul(n, 4, H), "gates", tag)
    cdef const floating* p_cs = cptr(cs, mul(n, H), "cs", tag)
    cdef const floating* p_c_prevs = cptr(c_prevs, mul(n, H), "c_prevs", tag)
    cdef const floating* p_h_prevs = cptr(h_prevs, mul(n, P), "h_prevs", tag)
    cdef const floating* p_rs = cptr(rs, mul(n, H) if proj else 0, "rs", tag)
    cdef const floating* p_dy = cptr(dy, 0, "dy", tag)
    if p_dy != NULL:
        check_dims(T, B, I, H, P, dy_col, ldy)
        cptr(dy, mul(n, ldy), "dy", tag)
        p_dy = p_dy + dy_col
    cdef const floating* p_dh_n = cptr(dh_n, mul(B, P), "dh_n", tag, True)
    cdef const floating* p_dc_n = cptr(dc_n, mul(B, H), "dc_n", tag, True)
    cdef floating* p_dx = ptr(dx, mul(n, I), "dx", tag)
    cdef floating* p_dh0 = ptr(dh0, mul(B, P), "dh0", tag)
    cdef floating* p_dc0 = ptr(dc0, mul(B, H), "dc0", tag)
    cdef floating* p_dw_ih = ptr(dw_ih, mul(4, H, I), "dw_ih", tag)
    cdef floating* p_dw_hh = ptr(dw_hh, mul(4, H, P), "dw_hh", tag)
    cdef floating* p_db = ptr(db, mul(4, H), "db", tag, True)
    cdef floating* p_dw_hr = ptr(dw_hr, mul(P, H) if proj else 0, "dw_hr", tag)
    work_arr = POOL.take(lstm_backward_workspace_size(n, B, H, P),
                         np.float64 if floating is double else np.float32)
    cdef floating* p_work = ptr(work_arr, 0, "work", tag)
    with nogil:
        lstm_backward(T, B, I, H, P, p_bs, reverse, p_x, p_w_ih, p_w_hh, p_w_hr, p_gates,
                      p_cs, p_c_prevs, p_h_prevs, p_rs, p_dy, ldy, p_dh_n, p_dc_n, p_dx,
                      accumulate_dx, p_dh0, p_dc0, p_dw_ih, p_dw_hh, p_db, p_dw_hr, p_work,
                      num_threads)
    POOL.give(work_arr)
    return 0
