"""The float32 activations (fastrnn/kernels/_activations.h): error bounds measured
over the whole float range, exact limits, NaN propagation.

They are reached through an RNN whose weights make h_t = act(x_t) exactly: w_ih = 1,
w_hh = 0, no bias, so every value goes through the kernels' own pass.  One unit goes
through the scalar loop of _cells.h; 64 units (one thread) through the whole vectors
of _cells_avx512.h where the build has AVX-512, each value broadcast to every unit.
"""

import numpy as np
import pytest

import fastrnn

# Measured maximum relative errors (README, _activations.h): 1.5e-7 for sigmoid and
# tanh; the bound leaves one float32 ulp (1.19e-7) of room, no more.  The same for
# _cells_avx512.h's vectors.
MAX_REL_ERROR = 2.7e-7
TINY = np.finfo(np.float32).tiny


UNITS = [1, 64]


def activation_layer(name, units):
    layer = fastrnn.RNN(1, units, nonlinearity=name, bias=False, dtype="float32")
    layer.load_state_dict({"weight_ih_l0": np.ones((units, 1)),
                           "weight_hh_l0": np.zeros((units, units))})
    return layer


def apply(name, values, units=1):
    """act(values) through the kernel: values as a batch of one-step sequences, each
    broadcast to ``units`` units (every unit must agree)."""
    with fastrnn.thread_limit(1):
        y, _ = activation_layer(name, units)(values.astype(np.float32).reshape(1, -1, 1))
    y = y.reshape(-1, units)
    np.testing.assert_array_equal(y, np.repeat(y[:, :1], units, axis=1))
    return y[:, 0]


def all_floats(n=1 << 20, seed=0):
    """Random bit patterns: every exponent equally likely, so the whole range."""
    bits = np.random.default_rng(seed).integers(0, 2 ** 32, n, dtype=np.uint64)
    values = bits.astype(np.uint32).view(np.float32)
    return values[np.isfinite(values)]


def sigmoid64(v):
    """float64 sigmoid without cancellation: exp(v) / (1 + exp(v)) for v < 0."""
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


REFERENCE = {"sigmoid": sigmoid64, "tanh": np.tanh}


@pytest.mark.parametrize("units", UNITS)
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_relative_error_over_the_whole_float_range(name, units):
    n = (1 << 20) // units              # as many outputs whatever the units
    x = np.concatenate([all_floats(n), np.linspace(-20, 20, 200001 // units,
                                                   dtype=np.float32)])
    got = apply(name, x, units).astype(np.float64)
    want = REFERENCE[name](x.astype(np.float64))
    normal = np.abs(want) >= TINY
    rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
    assert rel.max() <= MAX_REL_ERROR, (name, rel.max(), x[normal][rel.argmax()])
    # Below float32's normal range the answer is 0 or a subnormal, never far off.
    assert np.all(np.abs(got[~normal] - want[~normal]) <= TINY)


@pytest.mark.parametrize("name, limits", [
    ("sigmoid", {np.inf: 1.0, -np.inf: 0.0, 1e4: 1.0, -1e4: 0.0, 88.8: 1.0, -88.8: 0.0}),
    ("tanh", {np.inf: 1.0, -np.inf: -1.0, 1e4: 1.0, -1e4: -1.0, 0.0: 0.0}),
])
@pytest.mark.parametrize("units", UNITS)
def test_saturated_inputs_give_exact_limits(name, limits, units):
    x = np.array(list(limits), np.float32)
    got = apply(name, x, units)
    np.testing.assert_array_equal(got, np.array(list(limits.values()), np.float32))
    assert not np.isnan(got).any()


@pytest.mark.parametrize("units", UNITS)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_nan_propagates(name, units):
    got = apply(name, np.array([np.nan, 1.0, -np.nan], np.float32), units)
    assert np.isnan(got[0]) and np.isnan(got[2]) and np.isfinite(got[1])


@pytest.mark.parametrize("units", UNITS)
def test_tanh_is_odd_and_sigmoid_symmetric(units):
    x = all_floats((1 << 16) // units, seed=1)
    np.testing.assert_array_equal(apply("tanh", -x, units), -apply("tanh", x, units))
    s_pos = apply("sigmoid", x, units).astype(np.float64)
    s_neg = apply("sigmoid", -x, units)
    np.testing.assert_allclose(s_pos + s_neg, 1.0, atol=2 * MAX_REL_ERROR)


def test_float64_uses_the_c_library():
    x = np.linspace(-30, 30, 10001)
    layer = fastrnn.RNN(1, 1, nonlinearity="tanh", bias=False, dtype="float64")
    layer.load_state_dict({"weight_ih_l0": [[1.0]], "weight_hh_l0": [[0.0]]})
    y, _ = layer(x.reshape(1, -1, 1))
    np.testing.assert_allclose(y.reshape(-1), np.tanh(x), rtol=1e-15, atol=0)
