# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""One time step at a time through a stack of layers, for real-time services.

A StreamCore holds raw pointers to a layer's weights and to its own state and
scratch buffers (kept alive by references), so that a step costs the kernels'
work plus a few checks: no allocation once the first step has run, no
memoryview acquisitions, the GIL released while the kernels run.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel
from libc.string cimport memcpy
from fastrnn.kernels.common cimport (
    fastrnn_team_sync, fastrnn_team_barrier, fastrnn_flush_denormals,
    fastrnn_restore_fp_mode, omp_get_thread_num, omp_get_num_threads, split_units,
    gemv_rows, lstm_row, gru_row, rnn_row)
from fastrnn.kernels.gru cimport gru_forward, gru_workspace_size
from fastrnn.kernels.lstm cimport lstm_forward, lstm_workspace_size
from fastrnn.kernels.rnn cimport rnn_forward, rnn_workspace_size

import numpy as np

cnp.import_array()

cdef enum:
    CELL_RNN = 0
    CELL_LSTM = 1
    CELL_GRU = 2
    MAX_LAYERS = 64
    # Batches up to this many rows step on the weights' rows (_row_step): each
    # block of rows serves them all from L1.  Larger ones run the kernels (T = 1),
    # whose BLAS product is tuned for many rows.  Measured, LSTM(64, 128) on two
    # threads, the row steps against the kernels: 0.15x the time at batch 2, 0.27x
    # at 4, 0.5x at 8, 0.85x at 12, even at 16.
    ROW_STEP_MAX_BATCH = 12

_CELLS = {"rnn": CELL_RNN, "lstm": CELL_LSTM, "gru": CELL_GRU}
_ACTIVATIONS = {"tanh": 0, "relu": 1, "sigmoid": 2}


cdef inline bint _overlap(const char* a, Py_ssize_t na, const char* b,
                          Py_ssize_t nb) noexcept:
    return a < b + nb and b < a + na


cdef inline void* _data(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef class StreamCore:
    """The compiled state machine behind fastrnn's Layer.stream()."""

    cdef int cell, num_layers, activation
    cdef public int num_threads
    cdef readonly bint row_steps    # batch 1 on the live weights' rows (see _row_step)
    cdef bint reset_after, is_float
    cdef Py_ssize_t B, H, P, input_size
    cdef Py_ssize_t in_sizes[MAX_LAYERS]
    cdef void* w_ih[MAX_LAYERS]
    cdef void* w_hh[MAX_LAYERS]
    cdef void* b_ih[MAX_LAYERS]
    cdef void* b_hh[MAX_LAYERS]
    cdef void* w_hr[MAX_LAYERS]
    cdef void* h[MAX_LAYERS]
    cdef void* c[MAX_LAYERS]
    cdef void* y[MAX_LAYERS]
    cdef void* pre[MAX_LAYERS]
    cdef void* hn[MAX_LAYERS]
    cdef void* work
    cdef object _keep          # the arrays behind every pointer
    cdef readonly object dtype
    cdef readonly object h_state, c_state     # updated in place, never replaced

    def __init__(self, str cell, list weights, Py_ssize_t batch_size, Py_ssize_t input_size,
                 Py_ssize_t hidden_size, Py_ssize_t output_size, dtype, str nonlinearity,
                 bint reset_after, int num_threads):
        """``weights``: per layer a dict w_ih, w_hh, b_ih, b_hh, w_hr (C-contiguous
        arrays of ``dtype``, or None)."""
        cdef Py_ssize_t k, L = len(weights)
        if L > MAX_LAYERS:
            raise ValueError(f"streams hold at most {MAX_LAYERS} layers, got {L}")
        self.cell = _CELLS[cell]
        self.num_layers = L
        self.activation = _ACTIVATIONS[nonlinearity]
        self.reset_after = reset_after
        self.num_threads = num_threads
        self.B, self.H, self.P, self.input_size = batch_size, hidden_size, output_size, input_size
        self.dtype = np.dtype(dtype)
        self.is_float = self.dtype == np.float32
        B, H, P = batch_size, hidden_size, output_size
        self.h_state = np.zeros((L, B, P), self.dtype)
        self.c_state = np.zeros((L, B, H), self.dtype) if self.cell == CELL_LSTM else None
        outputs = [np.zeros((B, P), self.dtype) for _ in range(L)]
        if self.cell == CELL_LSTM:
            n_work = lstm_workspace_size(1, B, H, P, False)
        elif self.cell == CELL_GRU:
            n_work = gru_workspace_size(1, B, H, False)
        else:
            n_work = rnn_workspace_size(1, B, H, False)
        work = np.empty(max(n_work, 1), self.dtype)
        # Small batches step through _row_step unless the cell needs the kernels'
        # extra passes (an LSTM projection; a GRU whose W_hn multiplies r * h).
        self.row_steps = B <= ROW_STEP_MAX_BATCH and (
            self.cell == CELL_RNN or (self.cell == CELL_LSTM and P == H)
            or (self.cell == CELL_GRU and reset_after))
        gates = {CELL_RNN: 1, CELL_LSTM: 4, CELL_GRU: 3}[self.cell]
        pre = [np.empty(B * gates * H, self.dtype) for _ in range(L)]
        hn = [np.empty(B * H, self.dtype) for _ in range(L)]
        self._keep = [weights, outputs, work, pre, hn]
        self.work = _data(work)
        for k in range(L):
            w = weights[k]
            self.in_sizes[k] = w["w_ih"].shape[1]
            self.w_ih[k] = _data(w["w_ih"])
            self.w_hh[k] = _data(w["w_hh"])
            self.b_ih[k] = _data(w.get("b_ih"))
            self.b_hh[k] = _data(w.get("b_hh"))
            self.w_hr[k] = _data(w.get("w_hr"))
            self.h[k] = _data(self.h_state[k])
            self.c[k] = _data(self.c_state[k]) if self.c_state is not None else NULL
            self.y[k] = _data(outputs[k])
            self.pre[k] = _data(pre[k])
            self.hn[k] = _data(hn[k])

    cdef void _run_rows(self, void* x, void* out) noexcept nogil:
        cdef fastrnn_team_sync sync
        sync.count = 0
        sync.sense = 0
        if self.num_threads <= 1:
            _row_steps(self, x, out, 0, 1, &sync)
        else:
            with parallel(num_threads=self.num_threads):
                _row_steps(self, x, out, omp_get_thread_num(), omp_get_num_threads(), &sync)
        # The last layer's new state, once the team has joined (no thread reads the
        # old one any more): one copy here in place of a barrier in every step.
        memcpy(self.h[self.num_layers - 1], out,
               self.B * self.H * (sizeof(float) if self.is_float else sizeof(double)))

    cdef void _run(self, void* x, void* out) noexcept nogil:
        cdef int k
        if self.row_steps:
            self._run_rows(x, out)
            return
        cdef void* inp
        cdef void* dst
        for k in range(self.num_layers):
            inp = x if k == 0 else self.y[k - 1]
            dst = out if k == self.num_layers - 1 else self.y[k]
            if self.is_float:
                _step_layer[float](self, k, <float*>inp, <float*>dst)
            else:
                _step_layer[double](self, k, <double*>inp, <double*>dst)

    def step(self, cnp.ndarray x, cnp.ndarray out):
        """Advance one step: x (B, input_size) -> out (B, H_out); both C-contiguous
        arrays of the stream's dtype (checked by the Python wrapper)."""
        cdef void* px = cnp.PyArray_DATA(x)
        cdef void* po = cnp.PyArray_DATA(out)
        with nogil:
            self._run(px, po)

    def checked_step(self, object x, object out):
        """Stream.step for arrays that need no conversion: x an ndarray of the
        stream's dtype, C-contiguous, (B, input_size) or, with B == 1, (input_size,);
        ``out`` None or a writeable C-contiguous ndarray of that dtype shaped as
        Stream.step accepts.  Returns the output; None (having done nothing) for
        anything else (byte-swapped arrays, an ``out`` overlapping x), which the
        Python wrapper converts or rejects.  The same checks as the wrapper's, at C
        speed: they were a fifth of a small step."""
        cdef cnp.ndarray xa, oa
        cdef int type_num = cnp.NPY_FLOAT32 if self.is_float else cnp.NPY_FLOAT64
        cdef bint flat
        cdef cnp.npy_intp dims[2]
        if type(x) is not cnp.ndarray:
            return None
        xa = <cnp.ndarray>x
        if cnp.PyArray_TYPE(xa) != type_num or not cnp.PyArray_IS_C_CONTIGUOUS(xa) \
                or not cnp.PyArray_ISNOTSWAPPED(xa):
            return None
        flat = cnp.PyArray_NDIM(xa) == 1
        if flat:
            if self.B != 1 or cnp.PyArray_DIM(xa, 0) != self.input_size:
                return None
        elif cnp.PyArray_NDIM(xa) != 2 or cnp.PyArray_DIM(xa, 0) != self.B or \
                cnp.PyArray_DIM(xa, 1) != self.input_size:
            return None
        if out is None:
            if flat:
                dims[0] = self.P
                oa = cnp.PyArray_EMPTY(1, dims, type_num, 0)
            else:
                dims[0] = self.B
                dims[1] = self.P
                oa = cnp.PyArray_EMPTY(2, dims, type_num, 0)
        else:
            if type(out) is not cnp.ndarray:
                return None
            oa = <cnp.ndarray>out
            if cnp.PyArray_TYPE(oa) != type_num or not cnp.PyArray_IS_C_CONTIGUOUS(oa) \
                    or not cnp.PyArray_ISWRITEABLE(oa) or not cnp.PyArray_ISNOTSWAPPED(oa):
                return None
            # A team's thread may write out while another still reads x.
            if _overlap(cnp.PyArray_BYTES(xa), cnp.PyArray_NBYTES(xa),
                        cnp.PyArray_BYTES(oa), cnp.PyArray_NBYTES(oa)):
                return None
            if cnp.PyArray_NDIM(oa) == 2:
                if cnp.PyArray_DIM(oa, 0) != self.B or cnp.PyArray_DIM(oa, 1) != self.P:
                    return None
            elif not (flat and cnp.PyArray_NDIM(oa) == 1 and
                      cnp.PyArray_DIM(oa, 0) == self.P):
                return None
        cdef void* px = cnp.PyArray_DATA(xa)
        cdef void* po = cnp.PyArray_DATA(oa)
        with nogil:
            self._run(px, po)
        return oa


cdef inline void _step_layer(StreamCore s, int k, floating* x, floating* out) noexcept nogil:
    # h0 and h_n (c0 and c_n) may be the same buffer: the kernels read the initial
    # state before they write any final state.
    if s.cell == CELL_LSTM:
        lstm_forward[floating](1, s.B, s.in_sizes[k], s.H, s.P, NULL, False, x,
                           <floating*>s.w_ih[k], <floating*>s.w_hh[k], <floating*>s.b_ih[k],
                           <floating*>s.b_hh[k], <floating*>s.w_hr[k], <floating*>s.h[k],
                           <floating*>s.c[k], out, s.P, <floating*>s.h[k], <floating*>s.c[k],
                           NULL, NULL, NULL, NULL, NULL, <floating*>s.work, s.num_threads)
    elif s.cell == CELL_GRU:
        gru_forward[floating](1, s.B, s.in_sizes[k], s.H, NULL, False, s.reset_after, x,
                          <floating*>s.w_ih[k], <floating*>s.w_hh[k], <floating*>s.b_ih[k],
                          <floating*>s.b_hh[k], <floating*>s.h[k], out, s.H, <floating*>s.h[k],
                          NULL, NULL, NULL, <floating*>s.work, s.num_threads)
    else:
        rnn_forward[floating](1, s.B, s.in_sizes[k], s.H, NULL, False, s.activation, x,
                          <floating*>s.w_ih[k], <floating*>s.w_hh[k], <floating*>s.b_ih[k],
                          <floating*>s.b_hh[k], <floating*>s.h[k], out, s.H, <floating*>s.h[k],
                          NULL, NULL, <floating*>s.work, s.num_threads)


cdef void _row_step(StreamCore s, int k, const floating* x, floating* out, Py_ssize_t j0,
                    Py_ssize_t j1) noexcept nogil:
    """One step of layer k for the units [j0, j1) of every row: each gate's rows of
    W_ih x + W_hh h straight from the layer's weights, then the cell's pass.
    Writes the new h of those units to ``out``; the LSTM's c in place."""
    cdef Py_ssize_t I = s.in_sizes[k], H = s.H, B = s.B, g, b, n_gates, G
    cdef floating* pre = <floating*>s.pre[k]
    cdef floating* hn = <floating*>s.hn[k]
    cdef const floating* h = <floating*>s.h[k]
    cdef floating* c = <floating*>s.c[k]
    cdef const floating* w_ih = <floating*>s.w_ih[k]
    cdef const floating* w_hh = <floating*>s.w_hh[k]
    cdef const floating* b_ih = <floating*>s.b_ih[k]
    cdef const floating* b_hh = <floating*>s.b_hh[k]
    cdef const floating* b_hn = b_hh + 2 * H if b_hh != NULL else NULL
    n_gates = 4 if s.cell == CELL_LSTM else 3 if s.cell == CELL_GRU else 1
    G = n_gates * H
    for g in range(n_gates):
        gemv_rows(w_ih, I, I, x, I, B, b_ih, pre, G, g * H + j0, g * H + j1, False)
        if s.cell == CELL_GRU and g == 2:
            # W_hn h stays apart: r multiplies it (and b_hn, added by the cell pass).
            gemv_rows(w_hh + 2 * H * H, H, H, h, H, B, NULL, hn, H, j0, j1, False)
        else:
            gemv_rows(w_hh, H, H, h, H, B, b_hh, pre, G, g * H + j0, g * H + j1, True)
    for b in range(B):
        if s.cell == CELL_LSTM:
            lstm_row(pre + b * G, c + b * H, out + b * H, NULL, NULL, H, j0, j1, False)
        elif s.cell == CELL_GRU:
            gru_row(pre + b * G, hn + b * H, b_hn, h + b * H, out + b * H, H, j0, j1,
                    False)
        else:
            rnn_row(pre + b * G, out + b * H, j0, j1, s.activation, False)


cdef void _row_steps(StreamCore s, void* x, void* out, int tid, int nt,
                     fastrnn_team_sync* sync) noexcept nogil:
    """Every layer's step on this thread's units; a barrier after each layer but the
    last, whose output is the next one's input, before its state is updated."""
    cdef int k, sense = 0
    cdef Py_ssize_t j0, j1, b, j, H = s.H
    cdef void* inp
    cdef void* dst
    cdef unsigned int fp_mode = fastrnn_flush_denormals()
    split_units(H, tid, nt, &j0, &j1)
    for k in range(s.num_layers):
        inp = x if k == 0 else s.y[k - 1]
        dst = out if k == s.num_layers - 1 else s.y[k]
        if s.is_float:
            _row_step[float](s, k, <float*>inp, <float*>dst, j0, j1)
        else:
            _row_step[double](s, k, <double*>inp, <double*>dst, j0, j1)
        if k == s.num_layers - 1:
            break                                  # its state: by _run_rows, after the join
        fastrnn_team_barrier(sync, nt, &sense)     # every thread has read the old h
        for b in range(s.B):
            for j in range(j0, j1):
                if s.is_float:
                    (<float*>s.h[k])[b * H + j] = (<float*>dst)[b * H + j]
                else:
                    (<double*>s.h[k])[b * H + j] = (<double*>dst)[b * H + j]
    fastrnn_restore_fp_mode(fp_mode)
