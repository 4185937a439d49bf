"""Shared helpers for the fastrnn tests: cell catalogue, layer factories, comparisons."""

import dataclasses

import numpy as np
import pytest

import fastrnn

DTYPES = ("float64", "float32")
BACKENDS = ("auto", "reference")

# LSTM proj_size > 0 has no compiled kernel yet: tests that run it on backend="auto"
# carry this marker (the only place it is defined; remove it once the kernel lands).
@dataclasses.dataclass(frozen=True)
class Cell:
    """One kind of recurrent cell: the layer class and its cell-specific options."""

    name: str
    cls: type
    options: tuple = ()          # ((key, value), ...) passed to the constructor
    proj: bool = False           # LSTM with proj_size = hidden_size // 2

    @property
    def mode(self):
        return self.cls.mode

    @property
    def is_lstm(self):
        return self.cls is fastrnn.LSTM

    @property
    def gate_count(self):
        return self.cls.gate_count

    @property
    def nonlinearity(self):
        return dict(self.options).get("nonlinearity", "tanh")

    @property
    def reset_after(self):
        return dict(self.options).get("reset_after", True)

    @property
    def torch_name(self):
        """Name of the torch.nn class, or None when torch has no such cell."""
        if self.nonlinearity == "sigmoid" or not self.reset_after:
            return None
        return self.cls.__name__

    def proj_size(self, hidden_size):
        return hidden_size // 2 if self.proj else 0

    def make(self, input_size, hidden_size, **kwargs):
        """The layer, with this cell's options (and proj_size for the LSTMP cell)."""
        kw = dict(self.options)
        if self.proj:
            assert hidden_size >= 2, "proj_size needs hidden_size >= 2"
            kw["proj_size"] = self.proj_size(hidden_size)
        kw.update(kwargs)
        return self.cls(input_size, hidden_size, **kw)

    def __str__(self):
        return self.name


CELLS = (
    Cell("rnn_tanh", fastrnn.RNN, (("nonlinearity", "tanh"),)),
    Cell("rnn_relu", fastrnn.RNN, (("nonlinearity", "relu"),)),
    Cell("rnn_sigmoid", fastrnn.RNN, (("nonlinearity", "sigmoid"),)),
    Cell("lstm", fastrnn.LSTM),
    Cell("lstm_proj", fastrnn.LSTM, proj=True),
    Cell("gru", fastrnn.GRU, (("reset_after", True),)),
    Cell("gru_reset_before", fastrnn.GRU, (("reset_after", False),)),
)
CELL_BY_NAME = {c.name: c for c in CELLS}


def cell_params(cells=CELLS, backend="auto"):
    """pytest.param per cell, xfail-marked where ``backend`` cannot run it yet."""
    return [pytest.param(c, id=c.name,
                         marks=[])
            for c in cells]


def cell_backend_params(cells=CELLS, backends=BACKENDS):
    """pytest.param per (backend, cell), xfail-marked for auto + projection."""
    return [pytest.param(b, c, id=f"{b}-{c.name}",
                         marks=[])
            for b in backends for c in cells]


# ----------------------------------------------------------------- random data

def random_lengths(rng, B, T, kind="random"):
    """An int64 lengths array of shape (B,): "random" always holds a 1 and a T
    when B allows it; "equal" is all T; "equal_short" is all the same value < T
    (or T when T == 1); "ones" is all 1."""
    if kind == "equal":
        return np.full(B, T, np.int64)
    if kind == "equal_short":
        return np.full(B, max(1, T - 2), np.int64)
    if kind == "ones":
        return np.ones(B, np.int64)
    lengths = rng.integers(1, T + 1, size=B)
    if B >= 2:
        lengths[rng.permutation(B)[:2]] = (1, T)
    return lengths.astype(np.int64)


def padded_mask(lengths, T, B):
    """(T, B) bool mask of real steps."""
    if lengths is None:
        return np.ones((T, B), bool)
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def state_shapes(layer, B, batched=True):
    """(h_shape, c_shape or None) of a layer's hx for batch size B."""
    K = layer.num_layers * (2 if layer.bidirectional else 1)
    P = layer.proj_size or layer.hidden_size
    h = (K, B, P) if batched else (K, P)
    c = (K, B, layer.hidden_size) if batched else (K, layer.hidden_size)
    return h, (c if layer.mode == "lstm" else None)


def random_hx(rng, layer, B, batched=True, dtype=None):
    """Random initial states with the layer's hx structure."""
    dtype = dtype or layer.dtype
    h_shape, c_shape = state_shapes(layer, B, batched)
    h = rng.standard_normal(h_shape).astype(dtype) * 0.5
    if c_shape is None:
        return h
    return h, (rng.standard_normal(c_shape).astype(dtype) * 0.5)


def random_like_outputs(rng, y, h_n):
    """Random dy and dh_n with the structure of a forward's (y, h_n)."""
    dy = rng.standard_normal(y.shape).astype(y.dtype)
    if isinstance(h_n, tuple):
        dh = tuple(rng.standard_normal(a.shape).astype(a.dtype) for a in h_n)
    else:
        dh = rng.standard_normal(h_n.shape).astype(h_n.dtype)
    return dy, dh


def train_step(layer, x, hx=None, lengths=None, dy=None, dh_n=None):
    """forward_train then backward: returns ((y, h_n), (dx, dhx, grads))."""
    y, h_n, cache = layer.forward_train(x, hx, lengths)
    dx, dhx, grads = layer.backward(cache, dy, dh_n)
    return (y, h_n), (dx, dhx, grads)


# ----------------------------------------------------------------- comparisons

TOLERANCES = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


def assert_close(actual, expected, dtype, path="", tol=None):
    """Compare nested tuples/dicts of arrays: |a - e| <= tol * (|e| + max(1, max|e|)).

    ``tol`` defaults to 1e-12 for float64 and 1e-5 for float32, relative to each
    array's scale, so that long sums (weight gradients) are judged by their size.
    """
    tol = TOLERANCES[np.dtype(dtype)] if tol is None else tol
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a dict"
        assert list(actual) == list(expected), f"{path}: keys differ"
        for k in expected:
            assert_close(actual[k], expected[k], dtype, f"{path}[{k!r}]", tol)
        return
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)), f"{path}: expected a tuple"
        assert len(actual) == len(expected), f"{path}: lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, dtype, f"{path}[{i}]", tol)
        return
    if expected is None:
        assert actual is None, f"{path}: expected None"
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{path}: dtype {actual.dtype}, not {dtype}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale,
                               err_msg=f"at {path}")


def assert_same_structure_equal(actual, expected, path=""):
    """Exact (bitwise, NaN-aware) equality of nested tuples/dicts of arrays."""
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: keys differ"
        for k in expected:
            assert_same_structure_equal(actual[k], expected[k], f"{path}[{k!r}]")
    elif isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected), f"{path}: lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_structure_equal(a, e, f"{path}[{i}]")
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=f"at {path}")


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def default_threads():
    """Restore fastrnn's default thread count after a test that changes it."""
    yield
    fastrnn.set_num_threads(None)
