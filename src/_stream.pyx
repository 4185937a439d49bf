# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""One time step at a time through a stack of layers, for real-time services.

A StreamCore holds raw pointers to a layer's weights and to its own state and
scratch buffers (kept alive by references), so that a step costs the kernels'
work plus a few checks: no allocation once the first step has run, no
memoryview acquisitions, the GIL released while the kernels run.
"""

cimport numpy as cnp
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

_CELLS = {"rnn": CELL_RNN, "lstm": CELL_LSTM, "gru": CELL_GRU}
_ACTIVATIONS = {"tanh": 0, "relu": 1, "sigmoid": 2}


cdef inline void* _data(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef class StreamCore:
    """The compiled state machine behind fastrnn's Layer.stream()."""

    cdef int cell, num_layers, activation, num_threads
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
        self._keep = [weights, outputs, work]
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

    cdef void _run(self, void* x, void* out) noexcept nogil:
        cdef int k
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


ctypedef fused real:
    float
    double


cdef inline void _step_layer(StreamCore s, int k, real* x, real* out) noexcept nogil:
    # h0 and h_n (c0 and c_n) may be the same buffer: the kernels read the initial
    # state before they write any final state.
    if s.cell == CELL_LSTM:
        lstm_forward[real](1, s.B, s.in_sizes[k], s.H, s.P, NULL, False, x,
                           <real*>s.w_ih[k], <real*>s.w_hh[k], <real*>s.b_ih[k],
                           <real*>s.b_hh[k], <real*>s.w_hr[k], <real*>s.h[k],
                           <real*>s.c[k], out, s.P, <real*>s.h[k], <real*>s.c[k],
                           NULL, NULL, NULL, NULL, NULL, <real*>s.work, s.num_threads)
    elif s.cell == CELL_GRU:
        gru_forward[real](1, s.B, s.in_sizes[k], s.H, NULL, False, s.reset_after, x,
                          <real*>s.w_ih[k], <real*>s.w_hh[k], <real*>s.b_ih[k],
                          <real*>s.b_hh[k], <real*>s.h[k], out, s.H, <real*>s.h[k],
                          NULL, NULL, NULL, <real*>s.work, s.num_threads)
    else:
        rnn_forward[real](1, s.B, s.in_sizes[k], s.H, NULL, False, s.activation, x,
                          <real*>s.w_ih[k], <real*>s.w_hh[k], <real*>s.b_ih[k],
                          <real*>s.b_hh[k], <real*>s.h[k], out, s.H, <real*>s.h[k],
                          NULL, NULL, <real*>s.work, s.num_threads)
