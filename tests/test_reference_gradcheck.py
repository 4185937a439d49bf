"""The reference's analytic gradients against central finite differences (float64).

The loss is a random linear functional of every output, L = sum(y * wy) + sum(h_n * wh)
(+ sum(c_n * wc)), so its gradient with respect to each input is exactly what
``*_backward`` returns for dy = wy, dh_n = wh, dc_n = wc.
"""

import zlib

import numpy as np
import pytest

from fastrnn import reference

from conftest import CELLS, padded_mask

EPS = 1e-6
RTOL = 1e-6
ATOL = 1e-9       # finite differences of a loss of size ~1 carry ~1e-10 of rounding

T, B, I, H = 4, 3, 3, 3
P_PROJ = 2        # proj_size of the LSTMP cell (< H)


def make_inputs(rng, cell, bias):
    """Every differentiable input of one direction of ``cell``, by reference name."""
    G = cell.gate_count
    P = P_PROJ if cell.proj else H
    inputs = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, P)) * 0.5,
        "w_ih": rng.uniform(-0.8, 0.8, (G * H, I)),
        "w_hh": rng.uniform(-0.8, 0.8, (G * H, P)),
    }
    if cell.is_lstm:
        inputs["c0"] = rng.standard_normal((B, H)) * 0.5
    if bias:
        inputs["b_ih"] = rng.uniform(-0.5, 0.5, G * H)
        inputs["b_hh"] = rng.uniform(-0.5, 0.5, G * H)
    if cell.proj:
        inputs["w_hr"] = rng.uniform(-0.8, 0.8, (P, H))
    return inputs


def forward(cell, inp, mask, reverse):
    """Run the reference: returns (outputs tuple, cache)."""
    common = (inp["w_ih"], inp["w_hh"], inp.get("b_ih"), inp.get("b_hh"))
    if cell.mode == "lstm":
        y, h, c, cache = reference.lstm_forward(inp["x"], mask, inp["h0"], inp["c0"], *common,
                                                w_hr=inp.get("w_hr"), reverse=reverse)
        return (y, h, c), cache
    if cell.mode == "gru":
        y, h, cache = reference.gru_forward(inp["x"], mask, inp["h0"], *common,
                                            reset_after=cell.reset_after, reverse=reverse)
        return (y, h), cache
    y, h, cache = reference.rnn_forward(inp["x"], mask, inp["h0"], *common,
                                        nonlinearity=cell.nonlinearity, reverse=reverse)
    return (y, h), cache


def backward(cell, cache, weights):
    """Run the reference backward: returns the gradient of every input, by name."""
    if cell.mode == "lstm":
        dx, dh0, dc0, grads = reference.lstm_backward(cache, *weights)
        return dict(grads, x=dx, h0=dh0, c0=dc0)
    backward_fn = reference.gru_backward if cell.mode == "gru" else reference.rnn_backward
    dx, dh0, grads = backward_fn(cache, *weights)
    return dict(grads, x=dx, h0=dh0)


def loss(cell, inp, mask, reverse, weights):
    outs, _ = forward(cell, inp, mask, reverse)
    return sum(float(np.sum(o * w)) for o, w in zip(outs, weights))


def numeric_grad(cell, inp, name, mask, reverse, weights):
    """Central differences of the loss with respect to every element of inp[name]."""
    value = inp[name]
    grad = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        saved = value[idx]
        value[idx] = saved + EPS
        up = loss(cell, inp, mask, reverse, weights)
        value[idx] = saved - EPS
        down = loss(cell, inp, mask, reverse, weights)
        value[idx] = saved
        grad[idx] = (up - down) / (2 * EPS)
    return grad


def min_rnn_preactivation(inp, mask, cache):
    """Smallest |pre-activation| over the real steps of an RNN run (relu's kink at 0)."""
    a = inp["x"] @ inp["w_ih"].T + cache["h_prevs"] @ inp["w_hh"].T
    if "b_ih" in inp:
        a = a + inp["b_ih"] + inp["b_hh"]
    return np.abs(a[mask]).min()


LENGTHS = np.array([4, 1, 2])


@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_gradients_match_finite_differences(cell, bias, reverse, masked):
    rng = np.random.default_rng(zlib.crc32(f"{cell.name}-{bias}-{reverse}-{masked}".encode()))
    mask = padded_mask(LENGTHS if masked else None, T, B)
    for _ in range(50):
        inp = make_inputs(rng, cell, bias)
        outs, cache = forward(cell, inp, mask, reverse)
        # Finite differences across relu's kink would not measure the derivative.
        if cell.nonlinearity != "relu" or min_rnn_preactivation(inp, mask, cache) > 1e-3:
            break
    else:
        pytest.fail("could not draw relu pre-activations away from 0")
    weights = tuple(rng.standard_normal(o.shape) for o in outs)

    analytic = backward(cell, cache, tuple(w.copy() for w in weights))
    assert set(analytic) == set(inp), "a gradient per input, and only those"
    for name in inp:
        assert analytic[name].shape == inp[name].shape, name
        expected = numeric_grad(cell, inp, name, mask, reverse, weights)
        np.testing.assert_allclose(analytic[name], expected, rtol=RTOL, atol=ATOL,
                                   err_msg=f"d loss / d {name}")
    if masked:
        # Padded steps are not computed: no gradient reaches their inputs at all.
        assert not np.any(analytic["x"][~mask]), "gradient reached padded steps of x"


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_backward_leaves_cache_gradients_and_inputs_unchanged(cell):
    """backward does not write into dy/dh_n nor into the forward's inputs."""
    rng = np.random.default_rng(7)
    mask = padded_mask(LENGTHS, T, B)
    inp = make_inputs(rng, cell, bias=True)
    saved = {k: v.copy() for k, v in inp.items()}
    outs, cache = forward(cell, inp, mask, reverse=False)
    weights = tuple(rng.standard_normal(o.shape) for o in outs)
    saved_weights = tuple(w.copy() for w in weights)
    backward(cell, cache, weights)
    for k in inp:
        np.testing.assert_array_equal(inp[k], saved[k], err_msg=k)
    for w, s in zip(weights, saved_weights):
        np.testing.assert_array_equal(w, s)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_padded_outputs_are_zero_and_states_stop_at_last_step(cell):
    """y is 0 at padded steps; h_n (and c_n) equal the state after lengths[b] steps."""
    rng = np.random.default_rng(3)
    mask = padded_mask(LENGTHS, T, B)
    inp = make_inputs(rng, cell, bias=True)
    outs, _ = forward(cell, inp, mask, reverse=False)
    assert not np.any(outs[0][~mask])
    for b, n in enumerate(LENGTHS):
        one = {k: (v[:n, b:b + 1] if k == "x" else v[b:b + 1] if k in ("h0", "c0") else v)
               for k, v in inp.items()}
        outs_b, _ = forward(cell, one, np.ones((n, 1), bool), reverse=False)
        np.testing.assert_allclose(outs[0][:n, b], outs_b[0][:, 0], rtol=1e-14, atol=1e-15)
        for full, single in zip(outs[1:], outs_b[1:]):
            np.testing.assert_allclose(full[b], single[0], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_reverse_reads_each_sequence_from_its_own_end(cell):
    """reverse=True on a padded batch equals the forward pass over each flipped sequence."""
    rng = np.random.default_rng(5)
    mask = padded_mask(LENGTHS, T, B)
    inp = make_inputs(rng, cell, bias=True)
    outs, _ = forward(cell, inp, mask, reverse=True)
    for b, n in enumerate(LENGTHS):
        one = {k: (v[:n, b:b + 1][::-1].copy() if k == "x" else
                   v[b:b + 1] if k in ("h0", "c0") else v) for k, v in inp.items()}
        outs_b, _ = forward(cell, one, np.ones((n, 1), bool), reverse=False)
        np.testing.assert_allclose(outs[0][:n, b], outs_b[0][::-1, 0], rtol=1e-14, atol=1e-15)
        for full, single in zip(outs[1:], outs_b[1:]):
            np.testing.assert_allclose(full[b], single[0], rtol=1e-14, atol=1e-15)
