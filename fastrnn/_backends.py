"""The two ways of running one direction of one layer: compiled kernels and reference.

A backend lays a batch out its own way (``layout``), runs a direction forward
(``forward``) and backward (``backward``) on that layout, and the layers stack
directions and layers on top without knowing which backend they drive:

* ``CompiledBackend`` packs the batch as torch's PackedSequence (rows of step t
  are the sequences still running, longest first), so padded steps cost nothing;
* ``ReferenceBackend`` keeps the padded (T, B, F) batch and a (T, B) mask.
"""

import concurrent.futures
import contextlib
import threading

import numpy as np

from fastrnn import reference
from fastrnn.kernels import gru as _gru, lstm as _lstm, rnn as _rnn
from fastrnn._config import blas_guard, get_num_threads, kernel_threads
from fastrnn._scratch import POOL

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32),
          np.dtype(np.float64): np.empty(0, np.float64)}
_NO_SIZES = np.empty(0, np.intp)
# The buffers of a direction's training cache that come from the scratch pool.
_POOLED_CACHE_KEYS = ("gates", "cs", "c_prevs", "h_prevs", "rs", "hns", "hs")


def _flat(a, dtype):
    """``a`` as a C-contiguous array of ``dtype`` (a copy only where needed); empty
    for None.  The kernels read any C-contiguous array as its flat elements."""
    if a is None:
        return _EMPTY[np.dtype(dtype)]
    return np.ascontiguousarray(a, dtype=dtype)


class PackedLayout:
    """A batch as packed rows (N, F), sorted by decreasing length."""

    def __init__(self, x, lengths):
        T, B, _ = x.shape
        self.T, self.B, self.dtype = T, B, x.dtype
        if lengths is None:
            self.order = None
            self.batch_sizes = _NO_SIZES
            self.index = None
            self.n_rows = T * B
            self.x = self.pack(x)
        else:
            # Stable sort keeps equal lengths in their given order: results do not
            # depend on how ties are broken, but reproducibility is nicer this way.
            self.order = np.argsort(-lengths, kind="stable")
            sorted_lengths = lengths[self.order]
            self.batch_sizes = (sorted_lengths[None, :] > np.arange(T)[:, None]).sum(1)
            self.batch_sizes = np.ascontiguousarray(self.batch_sizes, dtype=np.intp)
            # Flat (t * B + b) index of each packed row, in packed order.
            self.index = np.concatenate(
                [t * B + self.order[:n] for t, n in enumerate(self.batch_sizes)])
            self.n_rows = len(self.index)
            self.x = self.pack(x)

    def pack(self, a):
        """(T, B, F) -> (N, F) packed rows: a view of ``a`` where it can be, else a
        copy in rows from the scratch pool (see recycle())."""
        if self.index is None:
            if a.flags.c_contiguous:
                return a.reshape(self.n_rows, a.shape[-1])
            rows = self.new_rows(a.shape[-1])
            np.copyto(rows.reshape(a.shape), a)       # e.g. a batch-first transpose
            return rows
        return np.ascontiguousarray(a.reshape(self.T * self.B, a.shape[-1])[self.index])

    @property
    def rows_are_sequence(self):
        """Whether unpack() returns the rows themselves (no padding to scatter into)."""
        return self.index is None

    def unpack(self, rows):
        """(N, F) packed rows -> (T, B, F), zeros at padded steps; a new array is
        lent by the scratch pool (it goes to the caller)."""
        if self.index is None:
            return rows.reshape(self.T, self.B, rows.shape[1])
        out = POOL.lend((self.T * self.B, rows.shape[1]), rows.dtype)
        out.fill(0)
        out[self.index] = rows
        return out.reshape(self.T, self.B, rows.shape[1])

    def new_rows(self, features, for_caller=False):
        """Rows for a kernel to fill (every one of them), from the scratch pool: taken
        (see recycle()), or lent when they will reach the caller as they are."""
        if for_caller:
            return POOL.lend((self.n_rows, features), self.dtype)
        return POOL.take(self.n_rows * features, self.dtype).reshape(self.n_rows, features)

    def sort_states(self, states):
        """(K, B, H) states in the caller's batch order -> sorted row order."""
        return states if self.order is None else states[:, self.order]

    def unsort_states(self, states):
        if self.order is None:
            return states
        out = np.empty_like(states)
        out[:, self.order] = states
        return out


def recycle(rows, *handed_out):
    """Give ``rows`` (from new_rows or pack) back to the scratch pool unless it shares
    memory with an array handed to the caller (or received from the caller).

    A batch-first layer returns a transposed copy of its packed output, so the
    packed rows die with the call; a fresh buffer for them each call faulted in
    every page (LSTM batch 32, 64 steps, hidden 128: 1 MB per call)."""
    base = rows if rows.base is None else rows.base
    # Only memory NumPy allocated (never a torch tensor's, say) goes to the pool.
    if isinstance(base, np.ndarray) and base.flags.owndata and not any(
            _shares(base, arr) for arr in handed_out):
        POOL.give(base)


def _shares(base, arr):
    """Whether ``arr`` may share memory with ``base``, an array that owns its data.

    NumPy points a view's ``base`` at the array owning the memory, so an array that
    owns its data, or is a view of another owner, shares none with ``base``; only
    other views (of a buffer, a tensor) need the address comparison."""
    if not isinstance(arr, np.ndarray):
        return False
    owner = arr.base
    if arr is base or owner is base:
        return True
    if owner is None or (isinstance(owner, np.ndarray) and owner.flags.owndata):
        return False
    return np.may_share_memory(base, arr)


class PaddedLayout:
    """A batch as padded (T, B, F) arrays and a (T, B) mask of real steps."""

    def __init__(self, x, lengths):
        T, B, _ = x.shape
        self.T, self.B, self.dtype = T, B, x.dtype
        if lengths is None:
            self.mask = np.ones((T, B), bool)
        else:
            self.mask = np.arange(T)[:, None] < lengths[None, :]
        self.x = self.pack(x)

    def pack(self, a):
        """Zeros at padded steps, whatever they held (NaN * 0 would still be NaN)."""
        return np.where(self.mask[:, :, None], a, 0).astype(self.dtype, copy=False)

    rows_are_sequence = True

    def unpack(self, rows):
        return rows

    def new_rows(self, features, for_caller=False):
        return np.zeros((self.T, self.B, features), self.dtype)

    def sort_states(self, states):
        return states

    def unsort_states(self, states):
        return states


class ReferenceBackend:
    """Runs reference.py, the plain NumPy statement of the maths."""

    name = "reference"
    Layout = PaddedLayout

    def run_directions(self, layer, layout, jobs, training):
        """Run ``jobs`` (callables taking a thread count, None = choose) in turn."""
        return [job(None) for job in jobs], False

    def forward(self, layer, layout, x, w, h0, c0, y, col, reverse, training, threads=None):
        mode = layer.mode
        if mode == "lstm":
            y_d, h_n, c_n, cache = reference.lstm_forward(
                x, layout.mask, h0, c0, w["w_ih"], w["w_hh"], w.get("b_ih"), w.get("b_hh"),
                w.get("w_hr"), reverse=reverse)
        elif mode == "gru":
            y_d, h_n, cache = reference.gru_forward(
                x, layout.mask, h0, w["w_ih"], w["w_hh"], w.get("b_ih"), w.get("b_hh"),
                reset_after=layer.reset_after, reverse=reverse)
            c_n = None
        else:
            y_d, h_n, cache = reference.rnn_forward(
                x, layout.mask, h0, w["w_ih"], w["w_hh"], w.get("b_ih"), w.get("b_hh"),
                nonlinearity=layer.nonlinearity, reverse=reverse)
            c_n = None
        y[..., col:col + y_d.shape[-1]] = y_d
        return h_n, c_n, cache

    def backward(self, layer, layout, cache, dy, col, dh_n, dc_n, dx, accumulate,
                 threads=None):
        width = cache["w_hh"].shape[1]
        dy_d = dy[..., col:col + width]
        if layer.mode == "lstm":
            dx_d, dh0, dc0, grads = reference.lstm_backward(cache, dy_d, dh_n, dc_n)
        elif layer.mode == "gru":
            dx_d, dh0, grads = reference.gru_backward(cache, dy_d, dh_n)
            dc0 = None
        else:
            dx_d, dh0, grads = reference.rnn_backward(cache, dy_d, dh_n)
            dc0 = None
        if accumulate:
            dx += dx_d
        else:
            dx[...] = dx_d
        return dh0, dc0, grads


class CompiledBackend:
    """Runs the fused Cython/OpenMP kernels on packed rows."""

    name = "auto"
    Layout = PackedLayout

    def run_directions(self, layer, layout, jobs, training):
        """Run the jobs of a layer's directions (callables taking a thread count).

        The two directions of a bidirectional layer are independent: with two or
        more threads they run at the same time on two halves of the threads, which
        beats giving all threads to one direction after the other whenever a step is
        too small to keep a whole team busy between barriers (see README, measured).
        Returns (results, concurrent).
        """
        threads = get_num_threads()
        if len(jobs) == 2 and threads >= 2 and \
                concurrent_directions_pay(layout.B, layer.gate_count, layer.hidden_size,
                                          training):
            half = threads // 2
            other = _direction_pool().submit(jobs[1], threads - half)
            first = jobs[0](half)
            return [first, other.result()], True
        return [job(threads) for job in jobs], False

    def forward(self, layer, layout, x, w, h0, c0, y, col, reverse, training, threads=None):
        mode, H, P = layer.mode, layer.hidden_size, layer.output_size
        dt = layout.dtype
        T, B, I = layout.T, layout.B, x.shape[1]
        N = layout.n_rows
        G = layer.gate_count
        _check_blas_sizes(B, G * H, I, y.shape[1], N if training else 0)
        nt = kernel_threads(B, G, H, I, threads)
        args = (T, B, I, H, layout.batch_sizes, reverse)
        x_f = _flat(x, dt)
        w_ih, w_hh = _flat(w["w_ih"], dt), _flat(w["w_hh"], dt)
        b_ih, b_hh = _flat(w.get("b_ih"), dt), _flat(w.get("b_hh"), dt)
        h_n = np.empty((B, P), dt)
        cache = dict(x=x_f, w_ih=w_ih, w_hh=w_hh, reverse=reverse, threads=nt,
                     has_bias=w.get("b_ih") is not None)
        empty = _EMPTY[dt]
        with _blas_threads_held(nt, threads):
            if mode == "lstm":
                c_n = np.empty((B, H), dt)
                w_hr = _flat(w.get("w_hr"), dt)
                cache["w_hr"] = w_hr
                if training:
                    cache.update(gates=POOL.take(N * 4 * H, dt), cs=POOL.take(N * H, dt),
                                 c_prevs=POOL.take(N * H, dt), h_prevs=POOL.take(N * P, dt),
                                 rs=POOL.take(N * H, dt) if P != H else empty)
                    bufs = (cache["gates"], cache["cs"], cache["c_prevs"], cache["h_prevs"],
                            cache["rs"])
                else:
                    bufs = (empty,) * 5
                _lstm.forward(T, B, I, H, P, layout.batch_sizes, reverse, x_f, w_ih, w_hh,
                              b_ih, b_hh, w_hr, _flat(h0, dt), _flat(c0, dt), y, col,
                              y.shape[1], h_n, c_n, *bufs, nt)
            elif mode == "gru":
                c_n = None
                if training:
                    cache.update(gates=POOL.take(N * 3 * H, dt), hns=POOL.take(N * H, dt),
                                 h_prevs=POOL.take(N * H, dt))
                    bufs = (cache["gates"], cache["hns"], cache["h_prevs"])
                else:
                    bufs = (empty,) * 3
                _gru.forward(*args, layer.reset_after, x_f, w_ih, w_hh, b_ih, b_hh,
                             _flat(h0, dt), y, col, y.shape[1], h_n, *bufs, nt)
            else:
                c_n = None
                if training:
                    cache.update(hs=POOL.take(N * H, dt), h_prevs=POOL.take(N * H, dt))
                    bufs = (cache["hs"], cache["h_prevs"])
                else:
                    bufs = (empty,) * 2
                _rnn.forward(*args, layer.nonlinearity, x_f, w_ih, w_hh, b_ih, b_hh,
                             _flat(h0, dt), y, col, y.shape[1], h_n, *bufs, nt)
        return h_n, c_n, cache

    def backward(self, layer, layout, cache, dy, col, dh_n, dc_n, dx, accumulate,
                 threads=None):
        mode, H, P = layer.mode, layer.hidden_size, layer.output_size
        dt = layout.dtype
        T, B, I = layout.T, layout.B, dx.shape[1]
        G = layer.gate_count
        nt = kernel_threads(B, G, H, I, threads)
        args = (T, B, I, H, layout.batch_sizes, cache["reverse"])
        dh0 = np.empty((B, P), dt)
        # The weight gradients go to the caller: lent (a fresh multi-megabyte array
        # each call would fault in every page).
        dw_ih, dw_hh = POOL.lend((G * H, I), dt), POOL.lend((G * H, P), dt)
        grads = dict(w_ih=dw_ih, w_hh=dw_hh)
        ldy = dy.shape[1]
        common_in = (cache["x"], cache["w_ih"], cache["w_hh"])
        with _blas_threads_held(nt, threads):
            if mode == "lstm":
                dc0 = np.empty((B, H), dt)
                db = np.empty(G * H, dt) if cache["has_bias"] else _EMPTY[dt]
                dw_hr = POOL.lend((P, H), dt) if P != H else _EMPTY[dt]
                _lstm.backward(T, B, I, H, P, layout.batch_sizes, cache["reverse"],
                               *common_in, cache["w_hr"], cache["gates"], cache["cs"],
                               cache["c_prevs"], cache["h_prevs"], cache["rs"], dy, col,
                               ldy, _flat(dh_n, dt), _flat(dc_n, dt), dx, accumulate,
                               dh0, dc0, dw_ih,
                               dw_hh, db, dw_hr, nt)
                if cache["has_bias"]:
                    grads.update(b_ih=db, b_hh=db.copy())
                if P != H:
                    grads["w_hr"] = dw_hr
            elif mode == "gru":
                dc0 = None
                has_bias = cache["has_bias"]
                db_ih = np.empty(G * H, dt) if has_bias else _EMPTY[dt]
                db_hh = np.empty(G * H, dt) if has_bias else _EMPTY[dt]
                _gru.backward(*args, layer.reset_after, *common_in, cache["gates"],
                              cache["hns"], cache["h_prevs"], dy, col, ldy,
                              _flat(dh_n, dt), dx, accumulate, dh0,
                              dw_ih, dw_hh, db_ih, db_hh, nt)
                if has_bias:
                    grads.update(b_ih=db_ih, b_hh=db_hh)
            else:
                dc0 = None
                db = np.empty(G * H, dt) if cache["has_bias"] else _EMPTY[dt]
                _rnn.backward(*args, layer.nonlinearity, *common_in, cache["hs"],
                              cache["h_prevs"], dy, col, ldy, _flat(dh_n, dt), dx,
                              accumulate, dh0, dw_ih,
                              dw_hh, db, nt)
                if cache["has_bias"]:
                    grads.update(b_ih=db, b_hh=db.copy())
        # The kernels consumed the cache (backward overwrites it): recycle its buffers.
        POOL.give(*(cache.pop(key) for key in _POOLED_CACHE_KEYS if key in cache))
        return dh0, dc0, grads


# When one thread per direction, both directions at once, beats all threads on each
# direction in turn.  Measured with bench/bidirectional.py on the 2-core development
# machine (README): training (forward_train + backward) gained at every shape
# (0.69-0.97x the time); inference only on the smallest steps (LSTM B=1 H=128:
# 0.85x) and was even (0.97-1.07x) from B*G*H = 768 up.
CONCURRENT_DIRECTIONS_MAX_WORK = 512


def concurrent_directions_pay(batch, gates, hidden, training):
    return training or batch * gates * hidden <= CONCURRENT_DIRECTIONS_MAX_WORK


BLAS_INT_MAX = 2 ** 31 - 1


def _check_blas_sizes(*sizes):
    """Every GEMM size and leading dimension must fit BLAS's 32-bit int (training's
    weight gradients contract over all N packed rows)."""
    if max(sizes) > BLAS_INT_MAX:
        raise ValueError(f"a dimension of {max(sizes)} exceeds the 32-bit BLAS interface "
                         f"({BLAS_INT_MAX}); split the batch or the sequence")


def _blas_threads_held(kernel_threads_used, budget):
    """The BLAS guard a kernel call needs: BLAS is held to one thread whenever our
    own team runs (it calls BLAS from every thread) or fastrnn was asked for one
    thread (``budget``: the caller's share, e.g. one direction of two running at
    once); a single-threaded kernel on a multi-thread budget has only small GEMMs,
    which BLAS runs on one thread anyway, so it skips the switch."""
    if kernel_threads_used > 1 or (get_num_threads() if budget is None else budget) == 1:
        return blas_guard.single_threaded()
    return contextlib.nullcontext()


_pool = None
_pool_lock = threading.Lock()


def _direction_pool():
    """One worker thread, made on first use, that runs a layer's second direction."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="fastrnn-direction")
        return _pool


BACKENDS = {"auto": CompiledBackend(), "reference": ReferenceBackend()}
