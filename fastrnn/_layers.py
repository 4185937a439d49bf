"""The recurrent layers: argument checks, weights in torch's layout, dispatch."""

import functools
import math
import numbers

import numpy as np

from fastrnn import persistence
from fastrnn._backends import BACKENDS, recycle
from fastrnn._scratch import POOL

__all__ = ["RNN", "LSTM", "GRU", "RNNBase"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_size(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _layer_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in _DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def as_real_array(value, name, dtype):
    """``value`` as an array of ``dtype``; TypeError unless it holds real numbers."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):     # a torch tensor
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


# A streamed step reads the weights' rows straight from the parameters, with a
# vector's width per load: rows that start a cache line apart keep those loads
# whole (NumPy's allocator aligns to 16 bytes; a 32-byte load from there crosses a
# line every other time, measured 10-15% slower on the rows read from L2).
PARAM_ALIGNMENT = 64


def aligned_param(values, dtype):
    """A copy of ``values`` as ``dtype``, starting on a PARAM_ALIGNMENT boundary.
    Parameters stay where they are made (loads and optimisers write into them)."""
    values = np.asarray(values)
    nbytes = values.size * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + PARAM_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % PARAM_ALIGNMENT
    out = raw[start:start + nbytes].view(dtype).reshape(values.shape)
    out[...] = values
    return out


def owned(arr, original):
    """``arr``, or a copy of it unless it is a fresh conversion of the caller's
    ``original``: a training cache must not see later changes to the caller's data,
    whether that came as an ndarray (``arr`` a view of it), a torch tensor or any
    other buffer (``arr`` a view of its memory)."""
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    fresh = root.flags.owndata and root is not original and not (
        isinstance(original, np.ndarray) and np.shares_memory(root, original))
    return arr if fresh else arr.copy()


class TrainCache:
    """What forward_train keeps for backward; it serves one backward call."""

    def __init__(self, layer, **fields):
        self.layer = layer
        self.used = False
        self.__dict__.update(fields)


class RNNBase:
    """Stack of recurrent layers mirroring torch.nn.RNN / LSTM / GRU."""

    mode = None          # "rnn", "lstm" or "gru"
    gate_count = None    # gate blocks in weight_ih: 1, 4, 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", backend="auto",
                 seed=None, *, nonlinearity="tanh", proj_size=0, reset_after=True,
                 reverse=False):
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        self.num_layers = _check_size(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or \
                not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = _layer_dtype(dtype)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.seed = seed
        if nonlinearity not in ("tanh", "relu", "sigmoid"):
            raise ValueError(
                f"nonlinearity must be 'tanh', 'relu' or 'sigmoid', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.proj_size = _check_size(proj_size, "proj_size", minimum=0)
        if self.proj_size and self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size, got "
                             f"{self.proj_size} >= {self.hidden_size}")
        self.reset_after = bool(reset_after)
        # reverse=True runs a unidirectional layer from the end of each sequence
        # (ONNX direction="reverse"); outputs stay aligned with the inputs.
        self.reverse = bool(reverse)
        if self.reverse and self.bidirectional:
            raise ValueError("reverse=True applies to unidirectional layers only")
        self._rng = np.random.default_rng(seed)
        self._params = {}
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._param_shapes():
            self._params[name] = aligned_param(self._rng.uniform(-bound, bound, shape),
                                               self.dtype)

    # ------------------------------------------------------------------ shapes
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """H_out: the width of h (proj_size when projecting)."""
        return self.proj_size or self.hidden_size

    def _suffix(self, layer, direction):
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _param_shapes(self):
        G, H, P = self.gate_count, self.hidden_size, self.output_size
        for k in range(self.num_layers):
            in_size = self.input_size if k == 0 else P * self.num_directions
            for d in range(self.num_directions):
                sfx = self._suffix(k, d)
                yield f"weight_ih{sfx}", (G * H, in_size)
                yield f"weight_hh{sfx}", (G * H, P)
                if self.bias:
                    yield f"bias_ih{sfx}", (G * H,)
                    yield f"bias_hh{sfx}", (G * H,)
                if self.proj_size:
                    yield f"weight_hr{sfx}", (P, H)

    def _weights(self, layer, direction):
        sfx = self._suffix(layer, direction)
        p = self._params
        w = {"w_ih": p[f"weight_ih{sfx}"], "w_hh": p[f"weight_hh{sfx}"]}
        if self.bias:
            w["b_ih"], w["b_hh"] = p[f"bias_ih{sfx}"], p[f"bias_hh{sfx}"]
        if self.proj_size:
            w["w_hr"] = p[f"weight_hr{sfx}"]
        return w

    _GRAD_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih",
                   "b_hh": "bias_hh", "w_hr": "weight_hr"}

    # -------------------------------------------------------------- parameters
    @property
    def params(self):
        """The live parameter arrays, by torch's names (optimisers update them in place)."""
        return self._params

    def state_dict(self):
        """Copies of the parameters, with torch's names, order and shapes."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load parameters (NumPy arrays, array-likes or torch tensors).

        Everything is checked before anything is written: a load that raises
        changes nothing.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError("load_state_dict expects a mapping of names to arrays")
        expected = dict(self._param_shapes())
        if strict:
            missing = [k for k in expected if k not in state_dict]
            unexpected = [k for k in state_dict if k not in expected]
            if missing:
                raise KeyError(f"missing key(s) in state_dict: {', '.join(missing)}")
            if unexpected:
                raise KeyError(f"unexpected key(s) in state_dict: {', '.join(unexpected)}")
        staged = {}
        for name, shape in expected.items():
            if name not in state_dict:
                continue
            value = as_real_array(state_dict[name], name, self.dtype)
            if value.shape != tuple(shape):
                raise ValueError(f"{name}: expected shape {tuple(shape)}, got {value.shape}")
            staged[name] = value
        for name, value in staged.items():
            self._params[name][...] = value

    # ------------------------------------------------------------ input checks
    def _prepare(self, x, hx, lengths):
        x = as_real_array(x, "x", self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D (batched) or 2-D (unbatched), got shape {x.shape}")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x: expected input_size={self.input_size} features, got {I} "
                             f"(x has shape {x.shape if batched else x[:, 0].shape})")
        if T == 0:
            raise ValueError("x: the sequence length must be at least 1")
        lengths = self._check_lengths(lengths, T, B, batched)
        h0, c0 = self._check_states(hx, B, batched)
        return x, h0, c0, lengths, batched

    def _check_lengths(self, lengths, T, B, batched):
        if lengths is None:
            return None
        if hasattr(lengths, "detach") and hasattr(lengths, "numpy"):
            lengths = lengths.detach().cpu().numpy()
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"lengths must be integers, got dtype {arr.dtype}")
        if not batched and arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},), got {arr.shape}")
        if B and (arr.min() < 1 or arr.max() > T):
            raise ValueError(f"lengths must lie in 1..{T} (the sequence length), "
                             f"got values from {arr.min()} to {arr.max()}")
        arr = arr.astype(np.intp)
        if B == 0 or arr.min() == T:
            return None          # every sequence is full: no packing needed
        return arr

    def _state_shapes(self, B, batched):
        K = self.num_layers * self.num_directions
        if batched:
            return (K, B, self.output_size), (K, B, self.hidden_size)
        return (K, self.output_size), (K, self.hidden_size)

    def _check_states(self, hx, B, batched):
        h_shape, c_shape = self._state_shapes(B, batched)
        if hx is None:
            h0 = np.zeros(h_shape, self.dtype)
            c0 = np.zeros(c_shape, self.dtype) if self.mode == "lstm" else None
        elif self.mode == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("hx of an LSTM must be a tuple (h_0, c_0)")
            h0 = self._check_state(hx[0], "h_0", h_shape)
            c0 = self._check_state(hx[1], "c_0", c_shape)
        else:
            h0 = self._check_state(hx, "hx", h_shape)
            c0 = None
        if not batched:
            h0 = h0[:, None, :]
            c0 = None if c0 is None else c0[:, None, :]
        return h0, c0

    def _check_state(self, value, name, shape):
        arr = as_real_array(value, name, self.dtype)
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
        return arr

    # ------------------------------------------------------------- forwarding
    def __call__(self, x, hx=None, lengths=None):
        y, h_n, c_n, _ = self._run(x, hx, lengths, training=False)
        return (y, (h_n, c_n)) if self.mode == "lstm" else (y, h_n)

    forward = __call__

    def forward_train(self, x, hx=None, lengths=None):
        """Forward keeping what backward needs: returns (y, h_n, cache)."""
        y, h_n, c_n, cache = self._run(x, hx, lengths, training=True)
        return (y, (h_n, c_n), cache) if self.mode == "lstm" else (y, h_n, cache)

    def _run(self, x, hx, lengths, training):
        x_in = x
        x_in_shape = np.shape(x)
        x, h0, c0, lengths, batched = self._prepare(x, hx, lengths)
        if training:
            x = owned(x, x_in)
        backend = BACKENDS[self.backend]
        layout = backend.Layout(x, lengths)
        T, B, _ = x.shape
        K, D, P = self.num_layers * self.num_directions, self.num_directions, self.output_size
        h0s = layout.sort_states(h0)
        c0s = None if c0 is None else layout.sort_states(c0)
        h_n = np.empty((K, B, P), self.dtype)
        c_n = np.empty((K, B, self.hidden_size), self.dtype) if c0 is not None else None
        inp = layout.x
        caches, masks = [], []
        handed_over = self._rows_handed_over(layout, batched)
        for k in range(self.num_layers):
            y = layout.new_rows(D * P, for_caller=handed_over and k == self.num_layers - 1)
            jobs = [functools.partial(
                backend.forward, self, layout, inp, self._weights(k, d), h0s[k * D + d],
                None if c0s is None else c0s[k * D + d], y, d * P, bool(d) != self.reverse,
                training) for d in range(D)]
            results, _ = backend.run_directions(self, layout, jobs, training)
            for d, (hn, cn, cache) in enumerate(results):
                h_n[k * D + d] = hn
                if c_n is not None:
                    c_n[k * D + d] = cn
                caches.append(cache)
            mask = None
            if training and self.dropout > 0 and k < self.num_layers - 1:
                mask = self._dropout_mask(layout, T, B, D * P)
                y = y * mask
            masks.append(mask)
            inp = y
        y_out = self._to_user_sequence(layout.unpack(inp), batched)
        recycle(inp, y_out, x_in)       # the last layer's rows (no cache keeps them)
        if not training:
            recycle(layout.x, x_in)     # the packed input, unless a view of x
        h_n = self._to_user_state(layout.unsort_states(h_n), batched)
        if c_n is not None:
            c_n = self._to_user_state(layout.unsort_states(c_n), batched)
        train_cache = None
        if training:
            train_cache = TrainCache(
                self, layout=layout, caches=caches, masks=masks, batched=batched,
                x_shape=x_in_shape, y_shape=y_out.shape, h_shape=h_n.shape,
                c_shape=None if c_n is None else c_n.shape)
        return y_out, h_n, c_n, train_cache

    def _dropout_mask(self, layout, T, B, width):
        """Inverted-dropout mask, drawn in the padded layout so both backends agree."""
        p = self.dropout
        if p >= 1:
            mask = np.zeros((T, B, width), self.dtype)
        else:
            keep = self._rng.random((T, B, width)) >= p
            mask = keep.astype(self.dtype) / self.dtype.type(1 - p)
        return layout.pack(mask)

    def _rows_handed_over(self, layout, batched):
        """Whether _to_user_sequence(layout.unpack(rows)) is a view of the rows."""
        return layout.rows_are_sequence and not (batched and self.batch_first)

    def _to_user_sequence(self, seq, batched):
        """(T, B, F) -> the caller's layout.

        ``seq`` is always a fresh array that no cache refers to (the last layer's
        output, or the first layer's input gradient), so views of it are handed
        over without a copy; a batch-first copy is lent by the scratch pool.
        """
        if not batched:
            return seq[:, 0]
        if self.batch_first:
            out = POOL.lend((seq.shape[1], seq.shape[0], seq.shape[2]), seq.dtype)
            np.copyto(out, seq.transpose(1, 0, 2))
            return out
        return seq

    def _to_user_state(self, state, batched):
        return np.ascontiguousarray(state if batched else state[:, 0])

    # ---------------------------------------------------------------- backward
    def backward(self, cache, dy=None, dh_n=None):
        """Gradients of a forward_train: returns (dx, dhx, grads)."""
        if not isinstance(cache, TrainCache) or cache.layer is not self:
            raise ValueError("backward needs the cache of this layer's forward_train")
        if cache.used:
            raise ValueError("this cache has already served a backward call "
                             "(its buffers were reused); run forward_train again")
        dy = dy_in = self._check_grad(dy, "dy", cache.y_shape)
        if self.mode == "lstm":
            if dh_n is None:
                dh_n = (None, None)
            if not isinstance(dh_n, (tuple, list)) or len(dh_n) != 2:
                raise ValueError("dh_n of an LSTM must be a tuple (dh_n, dc_n) or None")
            dhn = self._check_grad(dh_n[0], "dh_n[0]", cache.h_shape)
            dcn = self._check_grad(dh_n[1], "dh_n[1]", cache.c_shape)
        else:
            dhn = self._check_grad(dh_n, "dh_n", cache.h_shape)
            dcn = None
        cache.used = True

        batched, layout = cache.batched, cache.layout
        backend = BACKENDS[self.backend]
        D, P = self.num_directions, self.output_size
        if not batched:
            dy = dy[:, None]
            dhn = dhn[:, None]
            dcn = None if dcn is None else dcn[:, None]
        elif self.batch_first:
            dy = dy.transpose(1, 0, 2)
        d_out = layout.pack(dy)
        dhn = layout.sort_states(dhn)
        dcn = None if dcn is None else layout.sort_states(dcn)
        K = self.num_layers * D
        handed_over = self._rows_handed_over(layout, batched)
        dh0 = np.empty((K, layout.B, P), self.dtype)
        dc0 = np.empty((K, layout.B, self.hidden_size), self.dtype) \
            if self.mode == "lstm" else None
        grads = {}
        for k in reversed(range(self.num_layers)):
            if k < self.num_layers - 1 and cache.masks[k] is not None:
                d_out = d_out * cache.masks[k]
            in_size = self.input_size if k == 0 else D * P
            # Each direction writes its own input gradient, summed after: the two
            # may run at the same time.
            d_ins = [layout.new_rows(in_size, for_caller=k == 0 and d == 0 and handed_over)
                     for d in range(D)]
            jobs = [functools.partial(
                backend.backward, self, layout, cache.caches[k * D + d], d_out, d * P,
                dhn[k * D + d], None if dcn is None else dcn[k * D + d], d_ins[d], False)
                for d in range(D)]
            results, _ = backend.run_directions(self, layout, jobs, True)
            for d, (dh, dc, g) in enumerate(results):
                dh0[k * D + d] = dh
                if dc0 is not None:
                    dc0[k * D + d] = dc
                sfx = self._suffix(k, d)
                for key, value in g.items():
                    grads[f"{self._GRAD_NAMES[key]}{sfx}"] = value
            recycle(d_out, dy_in)           # this layer's output gradient is spent
            d_out = d_ins[0]
            for extra in d_ins[1:]:
                d_out += extra
                recycle(extra)
        dx = self._to_user_sequence(layout.unpack(d_out), batched)
        recycle(d_out, dx)
        dh0 = self._to_user_state(layout.unsort_states(dh0), batched)
        ordered = {name: grads[name] for name, _ in self._param_shapes()}
        if self.mode == "lstm":
            dc0 = self._to_user_state(layout.unsort_states(dc0), batched)
            return dx, (dh0, dc0), ordered
        return dx, dh0, ordered

    def _check_grad(self, value, name, shape):
        if value is None:
            return np.zeros(shape, self.dtype)
        arr = as_real_array(value, name, self.dtype)
        if arr.shape != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
        return arr

    # ------------------------------------------------------------------ misc
    def _config(self):
        cfg = dict(input_size=self.input_size, hidden_size=self.hidden_size,
                   num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                   dropout=self.dropout, bidirectional=self.bidirectional,
                   dtype=self.dtype.name, backend=self.backend)
        cfg.update(self._cell_config())
        if self.reverse:
            cfg["reverse"] = True
        return cfg

    def _cell_config(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ persistence
    def __getstate__(self):
        # Configuration, weights as arrays and the dropout generator: nothing compiled.
        return dict(config=self._config(), seed=self.seed, params=self.state_dict(),
                    rng=self._rng.bit_generator.state)

    def __setstate__(self, state):
        self.__init__(**state["config"], seed=state["seed"])
        self.load_state_dict(state["params"])
        self._rng.bit_generator.state = state["rng"]

    def __eq__(self, other):
        """Same class, configuration and parameter values."""
        if type(other) is not type(self):
            return NotImplemented
        return self._config() == other._config() and all(
            np.array_equal(v, other._params[k]) for k, v in self._params.items())

    __hash__ = None          # mutable parameters

    def save(self, path):
        """Write a ``.npz`` with the configuration and the state_dict (fastrnn.load)."""
        persistence.save(self, path)

    def stream(self, batch_size=1):
        """A Stream that steps this (unidirectional) layer one time step at a time."""
        from fastrnn.streaming import Stream
        return Stream(self, batch_size)

    def to_torch(self):
        """The equivalent torch.nn module (torch installed)."""
        from fastrnn.interop import to_torch
        return to_torch(self)


@persistence.register
class RNN(RNNBase):
    """Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""

    mode = "rnn"
    gate_count = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype="float32",
                 backend="auto", seed=None, *, reverse=False):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, backend, seed, nonlinearity=nonlinearity,
                         reverse=reverse)

    def _cell_config(self):
        return {"nonlinearity": self.nonlinearity}


@persistence.register
class LSTM(RNNBase):
    """LSTM with torch's gate order i, f, g, o; proj_size > 0 is torch's LSTMP."""

    mode = "lstm"
    gate_count = 4

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", backend="auto", seed=None,
                 proj_size=0, *, reverse=False):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, backend, seed, proj_size=proj_size,
                         reverse=reverse)

    def _cell_config(self):
        return {"proj_size": self.proj_size}


@persistence.register
class GRU(RNNBase):
    """GRU with torch's gate order r, z, n; reset_after selects where r applies."""

    mode = "gru"
    gate_count = 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", backend="auto", seed=None,
                 reset_after=True, *, reverse=False):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype, backend, seed, reset_after=reset_after,
                         reverse=reverse)

    def _cell_config(self):
        return {"reset_after": self.reset_after}
