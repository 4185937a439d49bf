"""Models around the recurrent layers: Embedding, Dense, FinalState, Dropout and Sequential.

Every block has the recurrent layers' interface: ``block(x)`` for inference,
``out, cache = block.forward_train(x)`` and ``dx, grads = block.backward(cache, dout)``
for training (a cache serves one backward), and ``state_dict()``, ``load_state_dict()``
and ``params`` (the live arrays) under torch's names.  ``Sequential`` chains them and
names parameters as ``torch.nn.Sequential`` does: ``"{index}.{name}"``.
"""

import math
import numbers

import numpy as np
from scipy.special import expit

from fastrnn._config import blas_guard, get_num_threads
from fastrnn import persistence
from fastrnn._train_ops import scatter_add
from fastrnn._layers import (GRU, LSTM, RNN, RNNBase, _check_size, _layer_dtype,
                             aligned_param, as_real_array, owned)
from fastrnn._scratch import POOL
from fastrnn.kernels.dense import product as _product

__all__ = ["Embedding", "Dense", "FinalState", "Dropout", "Sequential"]

ACTIVATIONS = (None, "relu", "tanh", "sigmoid", "softmax")
MASKED_OUTPUTS = ("zeros", "previous")


class BlockCache:
    """What a block's forward_train keeps for its backward; it serves one backward."""

    def __init__(self, block, **fields):
        self.block = block
        self.used = False
        self.__dict__.update(fields)


def _check_cache(cache, block):
    """Check that ``cache`` is an unused cache of ``block``."""
    if not isinstance(cache, BlockCache) or cache.block is not block:
        raise ValueError(f"backward needs the cache of this {type(block).__name__}'s "
                         "forward_train")
    if cache.used:
        raise ValueError("this cache has already served a backward call; "
                         "run forward_train again")


def _check_grad(dout, shape, dtype, name="dout"):
    arr = as_real_array(dout, name, dtype)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    return arr


class _Parameters:
    """state_dict / load_state_dict / params over a dict of named arrays."""

    _params = {}

    @property
    def params(self):
        """The live parameter arrays, by torch's names (optimisers update them in place)."""
        return self._params

    def state_dict(self):
        """Copies of the parameters, with torch's names and shapes."""
        return {name: value.copy() for name, value in self._params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load parameters (NumPy arrays, array-likes or torch tensors); a load that
        raises changes nothing."""
        staged = _stage_state(state_dict, {k: v.shape for k, v in self._params.items()},
                              self.dtype, strict)
        for name, value in staged.items():
            self._params[name][...] = value

    def __setstate__(self, state):
        # Unpickled arrays start wherever NumPy puts them; parameters start on cache
        # lines (see aligned_param), and a copy owns its parameters.
        self.__dict__.update(state)
        self._params = {name: aligned_param(value, value.dtype)
                        for name, value in self._params.items()}


def _stage_state(state_dict, shapes, dtype, strict):
    """Checked copies of the entries of ``state_dict`` named in ``shapes``."""
    if not hasattr(state_dict, "keys"):
        raise TypeError("load_state_dict expects a mapping of names to arrays")
    if strict:
        missing = [k for k in shapes if k not in state_dict]
        unexpected = [k for k in state_dict if k not in shapes]
        if missing:
            raise KeyError(f"missing key(s) in state_dict: {', '.join(missing)}")
        if unexpected:
            raise KeyError(f"unexpected key(s) in state_dict: {', '.join(unexpected)}")
    staged = {}
    for name, shape in shapes.items():
        if name not in state_dict:
            continue
        value = as_real_array(state_dict[name], name, dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {value.shape}")
        staged[name] = value
    return staged


# ----------------------------------------------------------------- Embedding
def as_tokens(tokens, num_embeddings, name="x"):
    """``tokens`` as an intp array; ValueError for ids outside 0..num_embeddings-1."""
    if hasattr(tokens, "detach") and hasattr(tokens, "numpy"):     # a torch tensor
        tokens = tokens.detach().cpu().numpy()
    arr = np.asarray(tokens)
    if arr.dtype.kind == "f":
        # Keras casts float token batches; accept them when they hold whole numbers.
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: token ids must be whole numbers")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: token ids must be integers, got dtype {arr.dtype}")
    if arr.size:
        low, high = arr.min(), arr.max()
        if low < 0 or high >= num_embeddings:
            bad = low if low < 0 else high
            raise ValueError(f"{name}: token id {bad:g} is out of range "
                             f"0..{num_embeddings - 1} (num_embeddings={num_embeddings})")
    return arr.astype(np.intp, copy=False)


class Embedding(_Parameters):
    """Lookup table, torch.nn.Embedding: ``out[..., :] = weight[tokens[...], :]``.

    ``weight`` (num_embeddings, embedding_dim) is drawn N(0, 1) as torch does, from
    ``numpy.random.default_rng(seed)``.  The row ``padding_idx`` starts at zero and
    its gradient is always zero, so optimisers leave it alone.

    ``mask_zero=True`` is Keras' option: token 0 marks padding wherever it stands
    (front, back or between tokens).  A ``Sequential`` starting with such an
    embedding runs each sequence's nonzero tokens only, in order, as a masked Keras
    model does; the embedding itself still looks up row 0 for them.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype="float32",
                 seed=None, *, mask_zero=False):
        self.num_embeddings = _check_size(num_embeddings, "num_embeddings")
        self.embedding_dim = _check_size(embedding_dim, "embedding_dim")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx must lie in {-self.num_embeddings}.."
                                 f"{self.num_embeddings - 1}, got {padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.mask_zero = bool(mask_zero)
        self.dtype = _layer_dtype(dtype)
        rng = np.random.default_rng(seed)
        weight = rng.standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            weight[padding_idx] = 0
        self._params = {"weight": aligned_param(weight, self.dtype)}

    def _config(self):
        return dict(num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
                    padding_idx=self.padding_idx, dtype=self.dtype.name,
                    mask_zero=self.mask_zero)

    @property
    def output_size(self):
        return self.embedding_dim

    def __call__(self, tokens):
        return self._forward(as_tokens(tokens, self.num_embeddings), training=False)[0]

    def forward_train(self, tokens):
        """Lookup keeping the tokens for backward: returns (out, cache)."""
        ids = owned(as_tokens(tokens, self.num_embeddings), tokens)
        return self._forward(ids, training=True)

    def _forward(self, ids, training):
        weight = self._params["weight"]
        # as_tokens checked the ids: "clip" only spares take() a buffered copy.
        out = np.take(weight, ids, axis=0, mode="clip",
                      out=POOL.lend(ids.shape + weight.shape[1:], self.dtype))
        cache = BlockCache(self, ids=ids, out_shape=out.shape) if training else None
        return out, cache

    def backward(self, cache, dout):
        """Returns (None, {"weight": dW}): dW[v] = sum of dout over positions holding v,
        zero for padding_idx.  Token ids have no gradient."""
        _check_cache(cache, self)
        dout = _check_grad(dout, cache.out_shape, self.dtype)
        cache.used = True
        return self._backward(cache, dout)

    def _backward(self, cache, dout):
        d_weight = np.zeros(self._params["weight"].shape, self.dtype)
        # One loop adding each position's row into its id's (np.add.at is ~10x slower).
        scatter_add(d_weight, np.ascontiguousarray(cache.ids.reshape(-1), dtype=np.intp),
                    np.ascontiguousarray(dout.reshape(-1, self.embedding_dim)))
        if self.padding_idx is not None:
            d_weight[self.padding_idx] = 0
        return None, {"weight": d_weight}

    def __repr__(self):
        extra = "".join([f", padding_idx={self.padding_idx}" * (self.padding_idx is not None),
                         ", mask_zero=True" * self.mask_zero])
        return (f"Embedding({self.num_embeddings}, {self.embedding_dim}{extra}, "
                f"dtype={self.dtype.name!r})")


# --------------------------------------------------------------------- Dense
def _softmax(z):
    """softmax(z) = exp(z - max z) / sum exp(z - max z) over the last axis."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def _activate(name, z):
    """act(z), written into z where that is safe (z is a fresh array)."""
    if name is None:
        return z
    if name == "relu":
        return np.maximum(z, 0, out=z)
    if name == "tanh":
        return np.tanh(z, out=z)
    if name == "sigmoid":
        return expit(z, out=z)
    return _softmax(z)


def _activation_backward(name, out, dout):
    """dL/dz from dL/dout and out = act(z)."""
    if name is None:
        return dout
    if name == "relu":
        return dout * (out > 0)
    if name == "tanh":
        return dout * (1 - out * out)
    if name == "sigmoid":
        return dout * out * (1 - out)
    # softmax: dz = out * (dout - sum(dout * out))
    return out * (dout - np.sum(dout * out, axis=-1, keepdims=True))


def _gemm(a, b, *, trans_a=False, trans_b=False, c=None):
    """C := op(A) op(B) + C (C zero when not given, then lent by the scratch pool), on
    2-D arrays of one dtype.

    Runs on fastrnn's packed micro-kernel where it outruns BLAS (AVX-512 builds,
    fastrnn.kernels.dense), else on fastrnn's own BLAS held to one thread per thread
    of fastrnn's OpenMP team, never on NumPy's: an idle OpenBLAS worker spins for a
    while after each call, and NumPy's (a second OpenBLAS) then starves the recurrent
    kernels' team.  Measured on 2 cores, character LM epochs (Dense 128 -> 96 on 2048
    rows per batch): 1.3 s with NumPy's matmul, 0.43 s on one BLAS thread.
    """
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    beta = 1.0
    if c is None:
        c, beta = POOL.lend((m, n), a.dtype), 0.0
    threads = get_num_threads() if m * n * (a.shape[0] if trans_a else a.shape[1]) \
        >= _PARALLEL_GEMM_MACS else 1
    with blas_guard.single_threaded():
        _product(trans_a, trans_b, 1.0, a, b, beta, c, threads)
    return c


# Multiply-adds from which a Dense GEMM splits over fastrnn's threads.
_PARALLEL_GEMM_MACS = 1 << 20


class Dense(_Parameters):
    """Affine map on the last axis and an activation: ``out = act(x W^T + b)``.

    torch.nn.Linear's layout and initialisation: ``weight`` (out_features,
    in_features) and ``bias`` (out_features,) drawn uniform(-1/sqrt(in_features),
    1/sqrt(in_features)).  ``activation`` is None, "relu", "tanh", "sigmoid" or
    "softmax" (over the last axis).  ``x`` may have any number of leading axes:
    on (B, T, in_features) sequences the map applies at every step.

    ``forward_train(x, logits=True)`` returns the pre-activation ``z = x W^T + b``
    (the logits, for softmax) and its backward then takes ``dL/dz``: that is how a
    softmax output trains with cross-entropy fused and stable.
    """

    def __init__(self, in_features, out_features, activation=None, bias=True,
                 dtype="float32", seed=None):
        self.in_features = _check_size(in_features, "in_features")
        self.out_features = _check_size(out_features, "out_features")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.bias = bool(bias)
        self.dtype = _layer_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self._params = {"weight": rng.uniform(-bound, bound, (self.out_features,
                                                              self.in_features))}
        if self.bias:
            self._params["bias"] = rng.uniform(-bound, bound, self.out_features)
        self._params = {k: aligned_param(v, self.dtype) for k, v in self._params.items()}

    def _config(self):
        return dict(in_features=self.in_features, out_features=self.out_features,
                    activation=self.activation, bias=self.bias, dtype=self.dtype.name)

    @property
    def output_size(self):
        return self.out_features

    def _check_input(self, x):
        x = as_real_array(x, "x", self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected a last axis of in_features={self.in_features}, "
                             f"got shape {x.shape}")
        return x

    def __call__(self, x, *, logits=False):
        return self._forward(self._check_input(x), training=False, logits=logits)[0]

    def forward_train(self, x, *, logits=False):
        """Forward keeping what backward needs: returns (out, cache)."""
        return self._forward(owned(self._check_input(x), x), training=True, logits=logits)

    def _forward(self, x, training, logits=False):
        # One GEMM over all leading axes, the bias preloaded into C.
        rows = x.reshape(-1, self.in_features)
        z = POOL.lend((rows.shape[0], self.out_features), self.dtype)
        if self.bias:
            z[...] = self._params["bias"]
            _gemm(rows, self._params["weight"], trans_b=True, c=z)
        else:
            z = _gemm(rows, self._params["weight"], trans_b=True)
        z = z.reshape(*x.shape[:-1], self.out_features)
        out = z if logits else _activate(self.activation, z)
        cache = BlockCache(self, x=x, out=out, logits=logits) if training else None
        return out, cache

    def backward(self, cache, dout):
        """Returns (dx, grads): dz = dout * act'(z), dx = dz W, dW = dz^T x, db = sum dz."""
        _check_cache(cache, self)
        dout = _check_grad(dout, cache.out.shape, self.dtype)
        cache.used = True
        return self._backward(cache, dout)

    def _backward(self, cache, dout):
        dz = dout if cache.logits else _activation_backward(self.activation, cache.out, dout)
        dz_rows = dz.reshape(-1, self.out_features)
        grads = {"weight": _gemm(dz_rows, cache.x.reshape(-1, self.in_features),
                                 trans_a=True)}
        if self.bias:
            grads["bias"] = dz_rows.sum(axis=0)
        dx = _gemm(dz_rows, self._params["weight"]).reshape(cache.x.shape)
        return dx, grads

    def __repr__(self):
        return (f"Dense({self.in_features}, {self.out_features}, "
                f"activation={self.activation!r}, bias={self.bias}, "
                f"dtype={self.dtype.name!r})")


# ---------------------------------------------------------------- FinalState
class FinalState(_Parameters):
    """The last recurrent layer's final hidden state, directions concatenated:
    ``out = concat(h_n[-D], ..., h_n[-1])`` on the feature axis, (B, D * H_out).

    ``h_n`` is the recurrent layer's returned state (for an LSTM, ``(h_n, c_n)``,
    of which h_n is used): each sequence's state at its own last real step, the
    backward direction's at its first.  This is Keras' ``return_sequences=False``.
    """

    dtype = None
    _params = {}

    def _config(self):
        return {}

    def __call__(self, h_n, num_directions=1):
        return self._forward(h_n, num_directions, training=False)[0]

    def forward_train(self, h_n, num_directions=1):
        """Returns (out, cache)."""
        return self._forward(h_n, num_directions, training=True)

    def _forward(self, h_n, num_directions, training):
        h, c = (h_n[0], h_n[1]) if isinstance(h_n, tuple) else (h_n, None)
        h = np.asarray(h)
        if h.ndim not in (2, 3) or h.shape[0] < num_directions:
            raise ValueError(f"h_n: expected (num_layers * {num_directions}, B, H), "
                             f"got shape {h.shape}")
        out = np.concatenate(list(h[-num_directions:]), axis=-1)
        cache = None
        if training:
            cache = BlockCache(self, h_shape=h.shape, c_shape=None if c is None else
                               np.shape(c), dtype=h.dtype, out_shape=out.shape,
                               num_directions=num_directions)
        return out, cache

    def backward(self, cache, dout):
        """Returns (dh_n, {}): dout split back onto the last D rows of h_n, zeros
        elsewhere (and a zero dc_n for an LSTM's (h_n, c_n))."""
        _check_cache(cache, self)
        dout = _check_grad(dout, cache.out_shape, cache.dtype)
        cache.used = True
        return self._backward(cache, dout)

    def _backward(self, cache, dout):
        D = cache.num_directions
        dh = np.zeros(cache.h_shape, cache.dtype)
        for d, part in enumerate(np.split(dout, D, axis=-1)):
            dh[cache.h_shape[0] - D + d] = part
        if cache.c_shape is not None:
            return (dh, np.zeros(cache.c_shape, cache.dtype)), {}
        return dh, {}

    def __repr__(self):
        return "FinalState()"


# ------------------------------------------------------------------- Dropout
class Dropout(_Parameters):
    """Inverted dropout, in forward_train only: ``out = x * m / (1 - p)`` with
    ``m ~ Bernoulli(1 - p)`` drawn from ``numpy.random.default_rng(seed)``;
    inference returns ``x`` unchanged (torch.nn.Dropout, Keras Dropout)."""

    dtype = None
    _params = {}

    def __init__(self, p=0.5, seed=None):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"p must be a number in [0, 1], got {p!r}")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)

    def _config(self):
        return dict(p=self.p)

    def __call__(self, x):
        return np.array(x, copy=True)

    def forward_train(self, x):
        """Returns (out, cache); the mask lives in the cache."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"x must hold floating-point numbers, got dtype {x.dtype}")
        return self._forward(x, training=True)

    def _forward(self, x, training):
        if not training:
            return x, None
        if self.p == 0:
            scale = np.ones(x.shape, x.dtype)
        elif self.p == 1:
            scale = np.zeros(x.shape, x.dtype)
        else:
            keep = self._rng.random(x.shape) >= self.p
            scale = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        return x * scale, BlockCache(self, scale=scale)

    def backward(self, cache, dout):
        """Returns (dx, {}): dx = dout * m / (1 - p)."""
        _check_cache(cache, self)
        dout = _check_grad(dout, cache.scale.shape, cache.scale.dtype)
        cache.used = True
        return self._backward(cache, dout)

    def _backward(self, cache, dout):
        return dout * cache.scale, {}

    def __repr__(self):
        return f"Dropout(p={self.p})"


# ---------------------------------------------------------------- Sequential
class _Steps:
    """Which steps of a batch are real, and how the recurrent layers see them.

    ``lengths`` (B,) goes to the recurrent layers (None: all steps real).
    ``real`` (B, T) marks real steps in the caller's layout (None: all real).
    With ``mask_zero`` the real steps may stand anywhere: ``gather`` (B, T) moves
    each row's real steps to its front, in order, and ``scatter`` (B, T) says which
    front-aligned step each output step shows (-1: zeros).  ``empty`` marks rows
    without a real step (their recurrent outputs and states are zeros, as in Keras).
    """

    def __init__(self, lengths=None, real=None, gather=None, scatter=None, empty=None):
        self.lengths, self.real = lengths, real
        self.gather, self.scatter, self.empty = gather, scatter, empty

    @classmethod
    def from_lengths(cls, lengths, B, T, masked_output):
        if lengths is None:
            return cls()
        if hasattr(lengths, "detach") and hasattr(lengths, "numpy"):
            lengths = lengths.detach().cpu().numpy()
        lengths = np.asarray(lengths)
        if lengths.dtype.kind not in "iu":
            raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
        if lengths.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},), got {lengths.shape}")
        if B and (lengths.min() < 1 or lengths.max() > T):
            raise ValueError(f"lengths must lie in 1..{T} (the sequence length), "
                             f"got values from {lengths.min()} to {lengths.max()}")
        if B and lengths.min() == T:
            return cls()                       # every sequence is full
        real = np.arange(T)[None, :] < lengths[:, None]
        scatter = _previous_index(real) if masked_output == "previous" else None
        return cls(lengths=lengths, real=real, scatter=scatter)

    @classmethod
    def from_mask(cls, real, masked_output):
        """Steps of a token batch whose real steps are ``real`` (B, T) (token != 0)."""
        B, T = real.shape
        counts = real.sum(axis=1)
        if counts.min(initial=T) == T:
            return cls()
        lengths = np.maximum(counts, 1)
        empty = counts == 0
        front = np.arange(T)[None, :] < counts[:, None]
        gather = None if np.array_equal(real, front) else \
            np.argsort(~real, axis=1, kind="stable")
        if masked_output == "previous":
            scatter = _previous_index(real)
        elif gather is not None:
            scatter = np.where(real, np.cumsum(real, axis=1) - 1, -1)
        else:
            scatter = None      # front-aligned: padded outputs are zeros already
        return cls(lengths=lengths, real=real, gather=gather, scatter=scatter,
                   empty=empty if empty.any() else None)

    def to_front(self, tokens):
        return tokens if self.gather is None else np.take_along_axis(tokens, self.gather, 1)

    def expand(self, y):
        """Front-aligned outputs (B, T, F) -> the caller's steps."""
        if self.scatter is None:
            return y
        index = np.maximum(self.scatter, 0)[:, :, None]
        out = np.take_along_axis(y, index, axis=1)
        out[self.scatter < 0] = 0
        return out

    def expand_backward(self, dout):
        """Adjoint of ``expand``: each output step's gradient goes to the step it shows."""
        if self.scatter is None:
            return dout
        B, T, F = dout.shape
        dy = np.zeros_like(dout)
        shown = self.scatter >= 0
        rows = np.broadcast_to(np.arange(B)[:, None], (B, T))
        np.add.at(dy, (rows[shown], self.scatter[shown]), dout[shown])
        return dy

    def zero_empty(self, *arrays):
        """Zero the rows without real steps: arrays (B, ...) or states (K, B, ...)."""
        if self.empty is None:
            return
        for arr, batch_axis in arrays:
            if arr is not None:
                arr[(slice(None),) * batch_axis + (self.empty,)] = 0


def _previous_index(real):
    """For each step, the front-aligned index of the last real step at or before it
    (-1 when none): Keras' masked output repeats the previous output."""
    return np.cumsum(real, axis=1) - 1


def _state_parts(h_n):
    return (h_n[0], h_n[1]) if isinstance(h_n, tuple) else (h_n, None)


@persistence.register
class Sequential:
    """A chain of blocks, ``torch.nn.Sequential``-like, for the textbook RNN models::

        Sequential([Embedding(V, 64, mask_zero=True), LSTM(64, 128, batch_first=True),
                    FinalState(), Dense(128, classes, activation="softmax")])

    Items: an ``Embedding`` (first only), recurrent layers (``batch_first=True``;
    they pass on their output sequence ``y``), ``FinalState()`` (right after a
    recurrent layer: its final hidden state), ``Dense`` (last axis, per step on
    sequences) and ``Dropout`` (training only).

    ``lengths`` (B,) is handed to every recurrent layer: steps at and after
    ``lengths[b]`` are padding.  An ``Embedding(mask_zero=True)`` instead treats
    token 0 as padding wherever it stands; each sequence's real tokens run in order.
    On a sequence output, ``masked_output`` says what padded steps show: "zeros"
    (torch's packed sequences) or "previous" (the output of the last real step
    before them, zeros before the first: Keras' masked layers).  Gradients arriving
    at padded output steps are ignored, as torch's packing and Keras' masked losses
    ignore them.

    Parameters and gradients are named ``"{index}.{name}"`` as in torch.
    """

    def __init__(self, items, *, masked_output="zeros"):
        self.items = list(items)
        if not self.items:
            raise ValueError("Sequential needs at least one item")
        if masked_output not in MASKED_OUTPUTS:
            raise ValueError(f"masked_output must be one of {MASKED_OUTPUTS}, "
                             f"got {masked_output!r}")
        self.masked_output = masked_output
        self.dtype = self._check_items()

    # ------------------------------------------------------------- structure
    def _check_items(self):
        kinds = (Embedding, RNNBase, FinalState, Dense, Dropout)
        features = None          # width of what flows between items, once known
        sequences = True
        dtypes = set()
        for i, item in enumerate(self.items):
            where = f"item {i} ({type(item).__name__})"
            if not isinstance(item, kinds):
                raise TypeError(f"{where}: Sequential takes Embedding, RNN/LSTM/GRU, "
                                "FinalState, Dense and Dropout items")
            if item.dtype is not None:
                dtypes.add(item.dtype)
            if isinstance(item, Embedding):
                if i:
                    raise ValueError(f"{where}: an Embedding must be the first item")
                features = item.embedding_dim
            elif isinstance(item, RNNBase):
                if not item.batch_first:
                    raise ValueError(f"{where}: recurrent layers in a Sequential must be "
                                     "batch_first=True")
                if not sequences:
                    raise ValueError(f"{where}: a recurrent layer needs sequences, but "
                                     "an earlier FinalState reduced them to one state")
                self._check_width(where, item.input_size, features)
                features = item.num_directions * item.output_size
            elif isinstance(item, FinalState):
                if not i or not isinstance(self.items[i - 1], RNNBase):
                    raise ValueError(f"{where}: FinalState must follow a recurrent layer "
                                     "directly")
                sequences = False
            elif isinstance(item, Dense):
                self._check_width(where, item.in_features, features)
                features = item.out_features
        if len(dtypes) > 1:
            raise ValueError("all items of a Sequential must share one dtype, got "
                             + ", ".join(sorted(d.name for d in dtypes)))
        return dtypes.pop() if dtypes else np.dtype(np.float32)

    @staticmethod
    def _check_width(where, expected, features):
        if features is not None and expected != features:
            raise ValueError(f"{where}: expects {expected} input features, but the "
                             f"previous item gives {features}")

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def __iter__(self):
        return iter(self.items)

    def __repr__(self):
        lines = [f"  ({i}): {item!r}" for i, item in enumerate(self.items)]
        extra = ", masked_output='previous'" if self.masked_output == "previous" else ""
        return "Sequential([\n" + ",\n".join(lines) + f"\n]{extra})"

    @property
    def embedding(self):
        """The leading Embedding, or None."""
        first = self.items[0]
        return first if isinstance(first, Embedding) else None

    @property
    def returns_sequences(self):
        """Whether the output keeps the time axis (no FinalState)."""
        return not any(isinstance(item, FinalState) for item in self.items)

    def _last_recurrent(self):
        indices = [i for i, item in enumerate(self.items) if isinstance(item, RNNBase)]
        return indices[-1] if indices else None

    # ------------------------------------------------------------ parameters
    @property
    def params(self):
        """The live parameter arrays of every item, named ``"{index}.{name}"``."""
        return {f"{i}.{name}": value for i, item in enumerate(self.items)
                for name, value in item.params.items()}

    def save(self, path):
        """Write a ``.npz`` with every item's configuration and the state_dict
        (``fastrnn.load`` rebuilds the model)."""
        persistence.save(self, path)

    def _to_npz_entries(self):
        items = [dict(cls=type(item).__name__, config=item._config())
                 for item in self.items]
        return dict(items=items, masked_output=self.masked_output), self.state_dict()

    @classmethod
    def _from_npz_entries(cls, config, arrays):
        if not isinstance(config, dict) or not isinstance(config.get("items"), list) or \
                "masked_output" not in config:
            raise ValueError("a Sequential configuration holds items (a list) and "
                             "masked_output")
        items = []
        for i, entry in enumerate(config["items"]):
            item_cls = _ITEM_CLASSES.get(entry.get("cls") if isinstance(entry, dict) else None)
            if item_cls is None:
                raise ValueError(f"unknown Sequential item {entry!r}")
            items.append(persistence.build(item_cls, entry.get("config"), f"item {i}"))
        model = cls(items, masked_output=config["masked_output"])
        model.load_state_dict(arrays)
        return model

    def state_dict(self):
        """Copies of every parameter, named ``"{index}.{name}"`` as torch names them."""
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load parameters named ``"{index}.{name}"``; a load that raises changes nothing."""
        shapes = {name: value.shape for name, value in self.params.items()}
        staged = _stage_state(state_dict, shapes, self.dtype, strict)
        for i, item in enumerate(self.items):
            prefix = f"{i}."
            part = {k[len(prefix):]: v for k, v in staged.items() if k.startswith(prefix)}
            if part:
                item.load_state_dict(part, strict=False)

    # ---------------------------------------------------------------- inputs
    def _prepare(self, x, lengths):
        """The validated input and its ``_Steps``."""
        embedding = self.embedding
        if embedding is not None:
            x = as_tokens(x, embedding.num_embeddings)
            if x.ndim != 2:
                raise ValueError(f"x: expected token ids of shape (B, T), got {x.shape}")
        else:
            x = as_real_array(x, "x", self.dtype)
            needs_steps = self._last_recurrent() is not None
            if x.ndim != 3 and (needs_steps or lengths is not None):
                raise ValueError(f"x: expected sequences of shape (B, T, features), "
                                 f"got {x.shape}")
            if x.ndim < 2:
                raise ValueError(f"x: expected a batch of shape (B, ..., features), "
                                 f"got {x.shape}")
        if x.ndim >= 2 and x.shape[1] == 0:
            raise ValueError("x: the sequence length must be at least 1")
        if embedding is not None and embedding.mask_zero:
            if lengths is not None:
                raise ValueError("pass lengths or use Embedding(mask_zero=True), not both: "
                                 "with mask_zero the padding is where the tokens are 0")
            steps = _Steps.from_mask(x != 0, self.masked_output)
        else:
            steps = _Steps.from_lengths(lengths, x.shape[0], x.shape[1], self.masked_output)
        return x, steps

    def real_steps(self, x, lengths=None):
        """(B, T) bool marking the real steps of a batch, or None when all are real."""
        return self._prepare(x, lengths)[1].real

    # --------------------------------------------------------------- forward
    def __call__(self, x, lengths=None, *, logits=False):
        """The model's output; ``logits=True`` stops before the last Dense's activation."""
        x, steps = self._prepare(x, lengths)
        return self._run(x, steps, training=False, logits=logits)[0]

    forward = __call__

    def forward_train(self, x, lengths=None, *, logits=False):
        """Forward keeping what backward needs: returns (out, cache).

        ``logits=True`` returns the last Dense's pre-activation z, and backward then
        takes dL/dz (softmax and cross-entropy fused, as Keras trains them).
        """
        x_in = x
        x, steps = self._prepare(x, lengths)
        x = owned(x, x_in)
        return self._run(x, steps, training=True, logits=logits)

    def _run(self, x, steps, training, logits):
        if logits and not isinstance(self.items[-1], Dense):
            raise ValueError("logits=True needs a Dense as the last item")
        last_recurrent = self._last_recurrent()
        # Real steps move to the front only for the recurrent layers' sake.
        h = steps.to_front(x) if last_recurrent is not None else x
        h_n = num_directions = None
        caches = []
        for i, item in enumerate(self.items):
            cache = None
            if isinstance(item, RNNBase):
                if training:
                    h, h_n, cache = item.forward_train(h, None, steps.lengths)
                else:
                    h, h_n = item(h, None, steps.lengths)
                state, cell = _state_parts(h_n)
                steps.zero_empty((h, 0), (state, 1), (cell, 1))
                num_directions = item.num_directions
                if i == last_recurrent and self.returns_sequences:
                    h = steps.expand(h)
            elif isinstance(item, FinalState):
                h, cache = item._forward(h_n, num_directions, training)
            elif isinstance(item, Dense):
                h, cache = item._forward(h, training, logits and i == len(self.items) - 1)
            else:
                h, cache = item._forward(h, training)
            caches.append(cache)
        model_cache = None
        if training:
            model_cache = BlockCache(self, caches=caches, steps=steps, out_shape=h.shape,
                                     logits=logits, real_steps=steps.real)
        return h, model_cache

    # -------------------------------------------------------------- backward
    def backward(self, cache, dout):
        """Gradients of a forward_train: returns (dx, grads).

        ``dx`` has the input's shape (None for token input); ``grads`` maps every
        ``state_dict()`` name to that parameter's gradient.
        """
        _check_cache(cache, self)
        dout = _check_grad(dout, cache.out_shape, self.dtype)
        cache.used = True
        steps = cache.steps
        if steps.real is not None and len(cache.out_shape) == 3 and self.returns_sequences:
            dout = dout * steps.real[:, :, None]
        last_recurrent = self._last_recurrent()
        grads = {}
        d_state = None
        for i in reversed(range(len(self.items))):
            item, item_cache = self.items[i], cache.caches[i]
            if isinstance(item, RNNBase):
                dy = dout
                if i == last_recurrent and self.returns_sequences:
                    dy = steps.expand_backward(dy)
                d_h, d_c = _state_parts(d_state) if d_state is not None else (None, None)
                if steps.empty is not None:
                    dy = None if dy is None else dy.copy()
                    d_h = None if d_h is None else d_h.copy()
                    d_c = None if d_c is None else d_c.copy()
                    steps.zero_empty((dy, 0), (d_h, 1), (d_c, 1))
                d_hn = (d_h, d_c) if item.mode == "lstm" else d_h
                dout, _, item_grads = item.backward(item_cache, dy, d_hn)
                d_state = None
            elif isinstance(item, FinalState):
                d_state, item_grads = item._backward(item_cache, dout)
                dout = None
            else:
                dout, item_grads = item._backward(item_cache, dout)
            for name, value in item_grads.items():
                grads[f"{i}.{name}"] = value
        if isinstance(self.items[0], Embedding):
            dout = None
        ordered = {name: grads[name] for name in self.params}
        return dout, ordered

    # ----------------------------------------------------------------- torch
    def to_torch(self):
        """The equivalent torch module (torch installed): a ``torch.nn.Sequential``
        subclass with the same item indices, so ``state_dict()`` names match, whose
        ``forward(x, lengths=None)`` runs recurrent layers on packed sequences."""
        from fastrnn._torch_models import sequential_to_torch
        return sequential_to_torch(self)


_ITEM_CLASSES = {c.__name__: c for c in (Embedding, Dense, FinalState, Dropout,
                                          RNN, LSTM, GRU)}
