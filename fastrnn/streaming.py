"""Streaming inference: one time step at a time, states kept between calls."""

import numpy as np

from fastrnn._config import blas_guard, kernel_threads
from fastrnn._stream import StreamCore

__all__ = ["Stream"]

# Multiply-adds of a step (all rows) from which two threads beat one (measured with
# bench/streaming.py, see README).  A step on the weights' rows (batches up to 12)
# splits them between the cores with no BLAS, and pays from ~64K (an LSTM of 64
# inputs and 128 units, batch 1: 98K, 0.65-0.75x the time on two threads).  The
# kernels' path for larger batches also pays for a BLAS switch: below ~1M it does not.
ROW_STEP_MIN_PARALLEL_MACS = 1 << 16
STREAM_MIN_PARALLEL_MACS = 1 << 20


class Stream:
    """Steps a unidirectional (possibly stacked) RNN/LSTM/GRU layer one input at a time.

    Stepping through ``x[0], x[1], ...`` gives exactly ``layer(x)``'s outputs and final
    states.  The stream reads the layer's live weights, so in-place updates of
    ``layer.params`` are seen by the next step; an entry replaced by another array
    is not (make a new stream).  ``out`` may be ``x_t`` itself.
    """

    def __init__(self, layer, batch_size=1):
        if layer.bidirectional:
            raise ValueError("a bidirectional layer cannot stream: its backward direction "
                             "needs the whole sequence")
        if layer.reverse:
            raise ValueError("a reverse layer cannot stream: it needs the whole sequence")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.layer = layer
        self.batch_size = int(batch_size)
        self.dtype = layer.dtype
        self._in_shape = (self.batch_size, layer.input_size)
        self._out_shape = (self.batch_size, layer.output_size)
        _check_live_params(layer)
        weights = [layer._weights(k, 0) for k in range(layer.num_layers)]
        self._core = StreamCore(layer.mode, weights, self.batch_size, layer.input_size,
                                layer.hidden_size, layer.output_size, layer.dtype,
                                layer.nonlinearity, layer.reset_after, 1)
        # A single step is a few microseconds of work: a second thread must save more
        # than its fork and barrier cost (see the constants).
        macs = self.batch_size * layer.gate_count * layer.hidden_size * (
            layer.hidden_size + max(layer.input_size, layer.output_size))
        threshold = ROW_STEP_MIN_PARALLEL_MACS if self._core.row_steps \
            else STREAM_MIN_PARALLEL_MACS
        self._threads = kernel_threads(self.batch_size, layer.gate_count, layer.hidden_size,
                                       max(layer.input_size, layer.output_size)) \
            if macs >= threshold else 1
        self._core.num_threads = self._threads
        # Only the kernels' path calls BLAS (from every thread of its team).
        self._guarded = self._threads > 1 and not self._core.row_steps

    def step(self, x_t, out=None):
        """Advance one step: x_t (batch_size, input_size) -> y_t (batch_size, H_out).

        A 1-D x_t (input_size,) is accepted when batch_size == 1 and gives a 1-D y_t.
        Returns a fresh array, or ``out`` (then nothing is allocated).
        """
        if not self._guarded:
            result = self._core.checked_step(x_t, out)
            if result is not None:
                return result
        x = x_t
        if type(x) is not np.ndarray or x.dtype != self.dtype or \
                not x.flags.c_contiguous:
            if hasattr(x, "detach") and hasattr(x, "numpy"):
                x = x.detach().cpu().numpy()
            x = np.asarray(x)
            if x.dtype.kind not in "fiu":
                raise TypeError(f"x_t must hold real numbers, got dtype {x.dtype}")
            x = np.ascontiguousarray(x, dtype=self.dtype)
        flat = x.ndim == 1
        if flat and self.batch_size == 1 and x.shape[0] == self._in_shape[1]:
            x = x.reshape(self._in_shape)
        if x.shape != self._in_shape:
            raise ValueError(f"x_t: expected shape {self._in_shape}"
                             + (f" or ({self._in_shape[1]},)" if self.batch_size == 1 else "")
                             + f", got {np.shape(x_t)}")
        if out is None:
            out = np.empty(self._out_shape, self.dtype)
            result = out[0] if flat else out
        else:
            if np.may_share_memory(x, out):
                x = x.copy()      # a team's thread may write out while another reads x
            result = out
            shapes = (self._out_shape, self._out_shape[1:]) if flat else (self._out_shape,)
            if type(out) is not np.ndarray or out.dtype != self.dtype or \
                    not out.flags.c_contiguous or not out.flags.writeable or \
                    out.shape not in shapes:
                raise ValueError(f"out must be a writeable C-contiguous {self.dtype} array "
                                 f"of shape {self._out_shape}"
                                 + (f" or ({self._out_shape[1]},)" if flat else ""))
        if self._guarded:
            with blas_guard.single_threaded():
                self._core.step(x, out)
        else:
            self._core.step(x, out)
        return result

    @property
    def state(self):
        """Copies of the states: h (num_layers, B, H_out), or (h, c) for an LSTM."""
        h = self._core.h_state.copy()
        if self._core.c_state is None:
            return h
        return h, self._core.c_state.copy()

    @state.setter
    def state(self, value):
        from fastrnn._layers import as_real_array
        if self._core.c_state is None:
            h, c = value, None
        else:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError("the state of an LSTM stream is a tuple (h, c)")
            h, c = value
        h = as_real_array(h, "state h", self.dtype)
        if h.shape != self._core.h_state.shape:
            raise ValueError(f"state h: expected shape {self._core.h_state.shape}, "
                             f"got {h.shape}")
        if c is not None:
            c = as_real_array(c, "state c", self.dtype)
            if c.shape != self._core.c_state.shape:
                raise ValueError(f"state c: expected shape {self._core.c_state.shape}, "
                                 f"got {c.shape}")
        self._core.h_state[...] = h          # in place: the core holds these buffers
        if c is not None:
            self._core.c_state[...] = c

    def reset(self, rows=None):
        """Zero the states of every row, or of the given rows (e.g. a finished user)."""
        if rows is None:
            index = slice(None)
        else:
            index = np.asarray(rows)
            if index.size == 0:
                return                     # nobody finished: nothing to reset
            if index.dtype.kind not in "iub" or index.ndim > 1:
                raise ValueError("rows must be integer indices or a boolean mask")
            if index.dtype.kind == "b":
                if index.shape != (self.batch_size,):
                    raise ValueError(f"a boolean rows mask needs shape ({self.batch_size},)")
            elif index.size and (index.min() < -self.batch_size or
                                 index.max() >= self.batch_size):
                raise ValueError(f"rows must lie in 0..{self.batch_size - 1}")
        self._core.h_state[:, index] = 0
        if self._core.c_state is not None:
            self._core.c_state[:, index] = 0

    def __reduce__(self):
        return (_rebuild_stream, (self.layer, self.batch_size, self.state))

    def __repr__(self):
        return f"Stream({self.layer!r}, batch_size={self.batch_size})"


def _check_live_params(layer):
    """The stream reads the layer's parameter arrays in place (no copy), so each must
    be what the kernels read: a C-contiguous native array of the layer's dtype and
    shape.  ``layer(x)`` converts what is not; a stream cannot without losing sight
    of later in-place updates, so it refuses."""
    for name, shape in layer._param_shapes():
        value = layer.params.get(name)
        if type(value) is not np.ndarray or value.dtype != layer.dtype or \
                not value.dtype.isnative or not value.flags.c_contiguous or \
                value.shape != tuple(shape):
            got = (f"{value.dtype} array of shape {value.shape}"
                   + ("" if value.flags.c_contiguous else ", not C-contiguous")
                   if isinstance(value, np.ndarray) else type(value).__name__)
            raise ValueError(f"a stream reads the layer's parameters in place: {name} must "
                             f"be a C-contiguous {np.dtype(layer.dtype).name} array of "
                             f"shape {tuple(shape)}, got a {got} (update it in place, or "
                             "use load_state_dict)")


def _rebuild_stream(layer, batch_size, state):
    stream = Stream(layer, batch_size)
    stream.state = state
    return stream
