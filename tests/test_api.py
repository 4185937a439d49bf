"""The public API: parameters, initialisation, input handling, errors, backward's contract."""

import math

import numpy as np
import pytest

import fastrnn

from conftest import (BACKENDS, CELL_BY_NAME, CELLS, DTYPES, assert_close,
                      assert_same_structure_equal, cell_backend_params, random_hx,
                      random_like_outputs, state_shapes, train_step)

SOME_CELLS = [CELL_BY_NAME[n] for n in ("rnn_tanh", "lstm", "lstm_proj", "gru")]


def expected_layout(cell, I, H, num_layers, bidirectional, bias):
    """torch's parameter names, order and shapes, written out from its documentation."""
    G, P = cell.gate_count, cell.proj_size(H) or H
    D = 2 if bidirectional else 1
    out = []
    for k in range(num_layers):
        in_size = I if k == 0 else P * D
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            out += [(f"weight_ih{sfx}", (G * H, in_size)), (f"weight_hh{sfx}", (G * H, P))]
            if bias:
                out += [(f"bias_ih{sfx}", (G * H,)), (f"bias_hh{sfx}", (G * H,))]
            if cell.proj:
                out += [(f"weight_hr{sfx}", (P, H))]
    return out


LAYOUTS = [dict(num_layers=1, bidirectional=False, bias=True),
           dict(num_layers=2, bidirectional=True, bias=True),
           dict(num_layers=3, bidirectional=False, bias=False),
           dict(num_layers=2, bidirectional=True, bias=False)]


def layout_id(kw):
    return f"L{kw['num_layers']}-{'bi' if kw['bidirectional'] else 'uni'}-" \
           f"{'bias' if kw['bias'] else 'nobias'}"


# ------------------------------------------------------------------ parameters

@pytest.mark.parametrize("kw", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_state_dict_names_order_and_shapes(cell, kw):
    layer = cell.make(3, 6, dtype="float32", seed=0, **kw)
    sd = layer.state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == expected_layout(cell, 3, 6, **kw)
    assert all(v.dtype == np.float32 for v in sd.values())
    assert list(layer.params) == list(sd)


@pytest.mark.parametrize("kw", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("cell", [c for c in CELLS if c.torch_name], ids=str)
def test_state_dict_layout_equals_torch(cell, kw):
    torch = pytest.importorskip("torch")
    kwargs = dict(kw, proj_size=cell.proj_size(6)) if cell.is_lstm else dict(kw)
    if cell.mode == "rnn":
        kwargs["nonlinearity"] = cell.nonlinearity
    module = getattr(torch.nn, cell.torch_name)(3, 6, **kwargs)
    layer = cell.make(3, 6, seed=0, **kw)
    assert [(k, v.shape) for k, v in layer.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def test_state_dict_returns_copies():
    layer = fastrnn.GRU(3, 4, seed=0)
    sd = layer.state_dict()
    before = layer(np.ones((2, 1, 3)))[0]
    for v in sd.values():
        assert not any(np.shares_memory(v, p) for p in layer.params.values())
        v += 1
    np.testing.assert_array_equal(layer(np.ones((2, 1, 3)))[0], before)


@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_params_are_live(backend, cell, rng):
    layer = cell.make(3, 4, backend=backend, dtype="float64", seed=0)
    x = rng.standard_normal((5, 2, 3))
    before = layer(x)[0]
    w = layer.params["weight_hh_l0"]
    w *= 1.5                                            # an optimiser's in-place update
    after = layer(x)[0]
    assert not np.allclose(after, before)
    twin = cell.make(3, 4, backend=backend, dtype="float64", seed=1)
    twin.load_state_dict({k: v.copy() for k, v in layer.params.items()})
    np.testing.assert_array_equal(twin(x)[0], after)


def test_load_state_dict_keeps_the_live_arrays():
    """An optimiser holding layer.params keeps updating the layer after a load."""
    layer = fastrnn.LSTM(3, 4, seed=0, dtype="float64")
    held = dict(layer.params)
    new = fastrnn.LSTM(3, 4, seed=1, dtype="float64").state_dict()
    layer.load_state_dict(new)
    for k, v in held.items():
        assert layer.params[k] is v
        np.testing.assert_array_equal(v, new[k])


def test_load_state_dict_copies_its_input():
    layer = fastrnn.RNN(3, 4, seed=0, dtype="float64")
    new = fastrnn.RNN(3, 4, seed=1, dtype="float64").state_dict()
    layer.load_state_dict(new)
    new["weight_ih_l0"] += 1
    assert not np.array_equal(layer.params["weight_ih_l0"], new["weight_ih_l0"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_from_lists_and_other_dtypes(dtype):
    layer = fastrnn.GRU(2, 3, dtype=dtype, seed=0)
    source = fastrnn.GRU(2, 3, dtype="float64", seed=5).state_dict()
    layer.load_state_dict({k: v.tolist() for k, v in source.items()})
    for k, v in source.items():
        assert layer.params[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(layer.params[k], v.astype(dtype))
    layer.load_state_dict(source)          # float64 arrays into any layer
    for k, v in source.items():
        assert layer.params[k].dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_state_dict_from_torch_tensors(dtype):
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2,
                           dtype=getattr(torch, dtype))
    layer = fastrnn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, dtype=dtype)
    layer.load_state_dict(module.state_dict())
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(layer.params[k], v.numpy())
    # parameters that require grad are accepted too
    layer.load_state_dict(dict(module.named_parameters()))


def bad_loads(layer):
    """(description, state_dict, exception, name that the message must hold)."""
    good = {k: v + 0.25 for k, v in layer.state_dict().items()}
    names = list(good)
    last = names[-1]
    missing = dict(good)
    del missing[last]
    unexpected = dict(good, weight_ih_l7=np.zeros((4, 3)))
    misshapen = dict(good)
    misshapen[last] = np.zeros(good[last].shape + (1,))
    transposed = dict(good)
    transposed["weight_ih_l0"] = good["weight_ih_l0"].T.copy()
    complex_ = dict(good)
    complex_[last] = good[last] * 1j
    return [("missing", missing, KeyError, last),
            ("unexpected", unexpected, KeyError, "weight_ih_l7"),
            ("misshapen", misshapen, ValueError, last),
            ("transposed", transposed, ValueError, "weight_ih_l0"),
            ("complex", complex_, TypeError, last)]


@pytest.mark.parametrize("case", range(5), ids=["missing", "unexpected", "misshapen",
                                                "transposed", "complex"])
@pytest.mark.parametrize("cell", SOME_CELLS, ids=str)
def test_failed_load_raises_naming_the_entry_and_changes_nothing(cell, case):
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, seed=0)
    before = layer.state_dict()
    _, sd, exc, name = bad_loads(layer)[case]
    with pytest.raises(exc, match=name):
        layer.load_state_dict(sd)
    assert_same_structure_equal(layer.state_dict(), before)


def test_load_state_dict_not_strict():
    layer = fastrnn.GRU(3, 4, seed=0, dtype="float64")
    before = layer.state_dict()
    other = fastrnn.GRU(3, 4, seed=1, dtype="float64").state_dict()
    layer.load_state_dict({"weight_hh_l0": other["weight_hh_l0"], "extra": np.zeros(3)},
                          strict=False)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, other[k] if k == "weight_hh_l0" else before[k])
    with pytest.raises(ValueError, match="bias_ih_l0"):
        layer.load_state_dict({"weight_hh_l0": before["weight_hh_l0"],
                               "bias_ih_l0": np.zeros(5)}, strict=False)
    np.testing.assert_array_equal(layer.params["weight_hh_l0"], other["weight_hh_l0"])


# -------------------------------------------------------------- initialisation

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_seeded_init_is_reproducible_and_bounded(cell, dtype):
    kw = dict(num_layers=2, bidirectional=True, dtype=dtype)
    a, b = cell.make(7, 16, seed=42, **kw), cell.make(7, 16, seed=42, **kw)
    c = cell.make(7, 16, seed=43, **kw)
    assert_same_structure_equal(a.state_dict(), b.state_dict())
    assert not np.array_equal(a.params["weight_hh_l0"], c.params["weight_hh_l0"])
    bound = 1 / math.sqrt(16)
    values = np.concatenate([v.ravel() for v in a.params.values()])
    assert all(v.dtype == np.dtype(dtype) for v in a.params.values())
    assert np.abs(values).max() <= bound
    # uniform on the whole interval: both ends reached closely, centred, spread out
    assert values.max() > 0.98 * bound and values.min() < -0.98 * bound
    assert abs(values.mean()) < 0.05 * bound
    assert np.std(values) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    # every tensor is drawn, none left at zero or shared with another
    for name, v in a.params.items():
        assert np.std(v) > 0.3 * bound, name


def test_unseeded_layers_differ():
    a, b = fastrnn.LSTM(3, 4), fastrnn.LSTM(3, 4)
    assert not np.array_equal(a.params["weight_ih_l0"], b.params["weight_ih_l0"])


@pytest.mark.parametrize("kwargs, exc", [
    (dict(nonlinearity="gelu"), ValueError),
    (dict(dropout=1.5), ValueError),
    (dict(dropout=-0.1), ValueError),
    (dict(backend="cuda"), ValueError),
    (dict(hidden_size=0), ValueError),
    (dict(num_layers=0), ValueError),
])
def test_bad_constructor_arguments(kwargs, exc):
    kw = dict(input_size=3, hidden_size=4)
    kw.update(kwargs)
    with pytest.raises(exc):
        fastrnn.RNN(**kw)


def test_proj_size_must_be_smaller_than_hidden_size():
    with pytest.raises(ValueError, match="proj_size"):
        fastrnn.LSTM(3, 4, proj_size=4)


# ------------------------------------------------------------- shapes and dtypes

@pytest.mark.parametrize("layout", ["time_major", "batch_first", "unbatched"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_output_shapes_and_dtypes(backend, cell, dtype, layout, rng):
    T, B, I, H = 5, 3, 4, 6
    layer = cell.make(I, H, num_layers=2, bidirectional=True, dtype=dtype,
                      batch_first=layout == "batch_first", backend=backend, seed=0)
    P = cell.proj_size(H) or H
    x = {"time_major": rng.standard_normal((T, B, I)),
         "batch_first": rng.standard_normal((B, T, I)),
         "unbatched": rng.standard_normal((T, I))}[layout]          # float64 input
    batched = layout != "unbatched"
    y, h_n, cache = layer.forward_train(x)
    y_shape = {"time_major": (T, B, 2 * P), "batch_first": (B, T, 2 * P),
               "unbatched": (T, 2 * P)}[layout]
    assert y.shape == y_shape and y.dtype == np.dtype(dtype)
    h_shape, c_shape = state_shapes(layer, B, batched)
    if cell.is_lstm:
        assert isinstance(h_n, tuple) and len(h_n) == 2
        assert h_n[0].shape == h_shape and h_n[1].shape == c_shape
        assert h_n[0].dtype == h_n[1].dtype == np.dtype(dtype)
    else:
        assert h_n.shape == h_shape and h_n.dtype == np.dtype(dtype)

    dx, dhx, grads = layer.backward(cache)
    assert dx.shape == x.shape and dx.dtype == np.dtype(dtype)
    if cell.is_lstm:
        assert isinstance(dhx, tuple) and len(dhx) == 2     # also when hx was None
        assert dhx[0].shape == h_shape and dhx[1].shape == c_shape
    else:
        assert isinstance(dhx, np.ndarray) and dhx.shape == h_shape
    sd = layer.state_dict()
    assert list(grads) == list(sd)
    for k, g in grads.items():
        assert g.shape == sd[k].shape and g.dtype == np.dtype(dtype), k


@pytest.mark.parametrize("backend, cell", cell_backend_params(CELLS))
def test_outputs_are_fresh_arrays(backend, cell, rng):
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, dtype="float64",
                      backend=backend, seed=0)
    x = rng.standard_normal((5, 2, 3))
    hx = random_hx(rng, layer, 2)
    lengths = np.array([5, 3])
    first = layer(x, hx, lengths)
    expected = layer(x, hx, lengths)
    leaves = [first[0]] + (list(first[1]) if cell.is_lstm else [first[1]])
    for a in leaves:
        assert a.flags.writeable
        for other in [x, *(hx if cell.is_lstm else [hx]), *layer.params.values()]:
            assert not np.shares_memory(a, other)
        a[...] = 7.0
    assert_same_structure_equal(layer(x, hx, lengths), expected)

    y, h_n, cache = layer.forward_train(x, hx, lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    dx, dhx, grads = layer.backward(cache, dy, dh)
    _, again = train_step(layer, x, hx, lengths, dy, dh)
    leaves = [y, dx, *(dhx if cell.is_lstm else [dhx]), *grads.values()]
    for a in leaves:
        assert a.flags.writeable
        for other in [x, dy, *layer.params.values()]:
            assert not np.shares_memory(a, other)
        a[...] = 7.0
    _, third = train_step(layer, x, hx, lengths, dy, dh)
    assert_same_structure_equal(third, again)


@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_inputs_are_left_unchanged(backend, cell, rng):
    layer = cell.make(3, 4, bidirectional=True, dtype="float64", backend=backend, seed=0)
    x = rng.standard_normal((5, 2, 3))
    hx = random_hx(rng, layer, 2)
    lengths = np.array([2, 5])
    y, h_n = layer(x, hx, lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    saved = [a.copy() for a in (x, lengths, dy)]
    saved_states = [a.copy() for a in ((*hx, *dh) if cell.is_lstm else (hx, dh))]
    params = layer.state_dict()
    train_step(layer, x, hx, lengths, dy, dh)
    for a, s in zip((x, lengths, dy), saved):
        np.testing.assert_array_equal(a, s)
    for a, s in zip((*hx, *dh) if cell.is_lstm else (hx, dh), saved_states):
        np.testing.assert_array_equal(a, s)
    assert_same_structure_equal(layer.state_dict(), params)


def _variants(a):
    """Copies of ``a`` in odd memory layouts (same values)."""
    big = np.zeros(tuple(2 * n for n in a.shape) + (2,), a.dtype)
    strided = big[(slice(None, None, 2),) * a.ndim + (1,)]
    strided[...] = a
    read_only = a.copy()
    read_only.flags.writeable = False
    reversed_ = np.ascontiguousarray(a[::-1])[::-1]          # negative strides
    return {"strided": strided, "fortran": np.asfortranarray(a),
            "read_only": read_only, "negative_strides": reversed_}


@pytest.mark.parametrize("variant", ["strided", "fortran", "read_only", "negative_strides"])
@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_any_memory_layout_gives_the_same_answer(backend, cell, variant, rng):
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, dtype="float64",
                      backend=backend, seed=0)
    x = rng.standard_normal((5, 3, 3))
    hx = random_hx(rng, layer, 3)
    lengths = np.array([5, 1, 3])
    y, h_n = layer(x, hx, lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    expected = (layer(x, hx, lengths), train_step(layer, x, hx, lengths, dy, dh))

    v = lambda a: _variants(a)[variant]                                    # noqa: E731
    hx_v = tuple(v(a) for a in hx) if cell.is_lstm else v(hx)
    dh_v = tuple(v(a) for a in dh) if cell.is_lstm else v(dh)
    got = (layer(v(x), hx_v, v(lengths)),
           train_step(layer, v(x), hx_v, v(lengths), v(dy), dh_v))
    assert_same_structure_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_first_view_of_time_major_input(backend, rng):
    """A transposed view (B, T, I) of a time-major array is accepted as is."""
    tm = fastrnn.GRU(3, 4, dtype="float64", backend=backend, seed=0)
    bf = fastrnn.GRU(3, 4, dtype="float64", backend=backend, seed=0, batch_first=True)
    x = rng.standard_normal((5, 2, 3))
    y_tm, h_tm = tm(x)
    y_bf, h_bf = bf(x.transpose(1, 0, 2))
    np.testing.assert_array_equal(y_bf, y_tm.transpose(1, 0, 2))
    np.testing.assert_array_equal(h_bf, h_tm)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_other_input_dtypes_are_converted(backend, dtype, rng):
    layer = fastrnn.LSTM(3, 4, dtype=dtype, backend=backend, seed=0)
    x_int = rng.integers(-2, 3, (4, 2, 3))
    expected = layer(x_int.astype(dtype))
    for x in (x_int, x_int.astype(np.float16), x_int.astype(np.float64),
              x_int.astype(np.float32), x_int.tolist()):
        y, (h, c) = layer(x)
        assert y.dtype == h.dtype == c.dtype == np.dtype(dtype)
        assert_same_structure_equal((y, (h, c)), expected)


@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_unbatched_equals_batch_of_one(backend, cell, rng):
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, dtype="float64",
                      backend=backend, seed=0)
    x = rng.standard_normal((5, 3))
    hx = random_hx(rng, layer, 1, batched=False)
    hx_b = tuple(a[:, None] for a in hx) if cell.is_lstm else hx[:, None]
    y, h_n = layer(x, hx)
    y_b, h_b = layer(x[:, None], hx_b)
    np.testing.assert_array_equal(y, y_b[:, 0])
    if cell.is_lstm:
        for a, b in zip(h_n, h_b):
            np.testing.assert_array_equal(a, b[:, 0])
    else:
        np.testing.assert_array_equal(h_n, h_b[:, 0])


@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_full_lengths_equal_no_lengths(backend, cell, rng):
    layer = cell.make(3, 4, bidirectional=True, dtype="float64", backend=backend, seed=0)
    x = rng.standard_normal((5, 3, 3))
    y, h_n = layer(x)
    dy, dh = random_like_outputs(rng, y, h_n)
    assert_close(train_step(layer, x, None, [5, 5, 5], dy, dh),
                 train_step(layer, x, None, None, dy, dh), "float64")


@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_lengths_equal_separate_runs(backend, cell, rng):
    """Each sequence of a padded batch gives what it gives alone, unpadded."""
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, dtype="float64",
                      backend=backend, seed=0)
    x = rng.standard_normal((6, 4, 3))
    hx = random_hx(rng, layer, 4)
    lengths = np.array([3, 6, 1, 4])
    y, h_n = layer(x, hx, lengths)
    for b, n in enumerate(lengths):
        hx_b = tuple(a[:, b:b + 1] for a in hx) if cell.is_lstm else hx[:, b:b + 1]
        y_b, h_b = layer(x[:n, b:b + 1], hx_b)
        assert_close(y[:n, b:b + 1], y_b, "float64")
        assert not np.any(y[n:, b])
        if cell.is_lstm:
            assert_close((h_n[0][:, b:b + 1], h_n[1][:, b:b + 1]), h_b, "float64")
        else:
            assert_close(h_n[:, b:b + 1], h_b, "float64")


# --------------------------------------------------------------- NaN and padding

@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("backend, cell", cell_backend_params(CELLS))
def test_nan_and_inf_stay_in_their_own_sequence(backend, cell, value, rng):
    layer = cell.make(3, 4, num_layers=2, dtype="float64", backend=backend, seed=0)
    x = rng.standard_normal((5, 3, 3))
    clean = layer(x)
    x_bad = x.copy()
    x_bad[2, 1, 0] = value
    with np.errstate(invalid="ignore"):
        y, h_n = layer(x_bad)
    others = [0, 2]
    np.testing.assert_array_equal(y[:, others], clean[0][:, others])
    states = zip(h_n, clean[1]) if cell.is_lstm else [(h_n, clean[1])]
    for got, want in states:
        np.testing.assert_array_equal(got[:, others], want[:, others])
    np.testing.assert_array_equal(y[:2, 1], clean[0][:2, 1])       # before the bad step
    if np.isnan(value):
        # NaN is carried through every later state of its sequence (as torch does).
        assert np.isnan(y[2:, 1]).all()
        for got in (h_n if cell.is_lstm else (h_n,)):
            assert np.isnan(got[:, 1]).all()


@pytest.mark.parametrize("fill", [np.nan, np.inf, 1e300])
@pytest.mark.parametrize("backend, cell", cell_backend_params(CELLS))
def test_padding_values_are_never_read(backend, cell, fill, rng):
    """Whatever sits in the padded steps of x, results and gradients are those of
    zero padding: torch's packed sequences never read them."""
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, dtype="float64",
                      backend=backend, seed=0)
    T, B = 6, 3
    lengths = np.array([6, 2, 4])
    pad = np.arange(T)[:, None] >= lengths[None, :]
    x = rng.standard_normal((T, B, 3))
    x[pad] = 0
    y, h_n = layer(x, lengths=lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    expected = (layer(x, lengths=lengths), train_step(layer, x, None, lengths, dy, dh))
    x_filled = x.copy()
    x_filled[pad] = fill
    with np.errstate(all="ignore"):
        got = (layer(x_filled, lengths=lengths),
               train_step(layer, x_filled, None, lengths, dy, dh))
    assert_same_structure_equal(got, expected)


# ---------------------------------------------------------------------- dropout

@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_dropout_only_in_training_and_not_after_the_last_layer(backend, cell, rng):
    x = rng.standard_normal((5, 3, 3))
    plain = cell.make(3, 4, num_layers=2, dtype="float64", backend=backend, seed=0)
    drop = cell.make(3, 4, num_layers=2, dtype="float64", backend=backend, seed=0,
                     dropout=0.5)
    assert_same_structure_equal(drop(x), plain(x))                  # inference never drops
    y_train, _, _ = drop.forward_train(x)
    assert not np.allclose(y_train, plain(x)[0])                   # training does
    assert_same_structure_equal(drop(x), plain(x))                  # and leaves no trace
    one = cell.make(3, 4, dtype="float64", backend=backend, seed=0, dropout=0.5)
    one_plain = cell.make(3, 4, dtype="float64", backend=backend, seed=0)
    y1, h1, _ = one.forward_train(x)                               # single layer: no dropout
    assert_same_structure_equal((y1, h1), one_plain(x))


@pytest.mark.parametrize("p", [0.3, 1.0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_inverted_dropout_between_layers(backend, p, rng):
    """Layer 2 is relu(x) with identity input weights, layer 1 has outputs > 0, so
    layer 2's output is layer 1's output times the dropout mask: {0, 1/(1-p)}."""
    H, T, B = 8, 50, 40
    layer = fastrnn.RNN(H, H, num_layers=2, nonlinearity="relu", dropout=p,
                        dtype="float64", backend=backend, seed=0)
    sd = layer.state_dict()
    sd["weight_ih_l0"] = np.abs(sd["weight_ih_l0"])
    sd["weight_hh_l0"] = np.abs(sd["weight_hh_l0"])
    sd["bias_ih_l0"] = np.full(H, 0.1)
    sd["weight_ih_l1"] = np.eye(H)
    for k in ("weight_hh_l1", "bias_ih_l1", "bias_hh_l1", "bias_hh_l0"):
        sd[k] = np.zeros_like(sd[k])
    layer.load_state_dict(sd)
    x = np.abs(rng.standard_normal((T, B, H)))
    first = fastrnn.RNN(H, H, nonlinearity="relu", dtype="float64", backend=backend)
    first.load_state_dict({k[:-1] + "0": v for k, v in sd.items() if k.endswith("l0")})
    y1 = first(x)[0]
    assert y1.min() > 0
    y2, _, _ = layer.forward_train(x)
    mask = y2 / y1
    if p == 1.0:
        assert not np.any(y2)
        return
    kept = mask != 0
    np.testing.assert_allclose(mask[kept], 1 / (1 - p), rtol=1e-14)
    assert abs((~kept).mean() - p) < 0.02


# --------------------------------------------------------------------- errors

@pytest.fixture(params=BACKENDS)
def error_backend(request):
    return request.param


@pytest.mark.parametrize("cell", [CELL_BY_NAME["rnn_tanh"], CELL_BY_NAME["lstm"]], ids=str)
@pytest.mark.parametrize("bad, exc", [
    (np.zeros(3), ValueError),                       # 1-D
    (np.zeros((2, 2, 2, 3)), ValueError),            # 4-D
    (np.zeros((5, 2, 4)), ValueError),               # input_size 4, not 3
    (np.zeros((5, 4)), ValueError),                  # unbatched, wrong input_size
    (np.zeros((0, 2, 3)), ValueError),               # no steps
    (np.zeros((5, 2, 3), complex), TypeError),
    (np.full((5, 2, 3), "a"), TypeError),
    ("abc", TypeError),
    (np.zeros((5, 2, 3), object), TypeError),
], ids=["1d", "4d", "input_size", "unbatched_input_size", "empty", "complex", "strings",
        "str", "object"])
def test_bad_x(cell, error_backend, bad, exc):
    layer = cell.make(3, 4, backend=error_backend, seed=0)
    with pytest.raises(exc):
        layer(bad)
    with pytest.raises(exc):
        layer.forward_train(bad)


@pytest.mark.parametrize("cell", [CELL_BY_NAME["gru"], CELL_BY_NAME["lstm_proj"]], ids=str)
def test_bad_hx(cell, error_backend):
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, backend=error_backend, seed=0)
    x = np.zeros((5, 2, 3))
    h_shape, c_shape = state_shapes(layer, 2)
    K, B, P = h_shape
    bad_h = [np.zeros((K - 1, B, P)), np.zeros((K, B + 1, P)), np.zeros((K, B, P + 1)),
             np.zeros((K, P)), np.zeros((1, K, B, P))]
    for h in bad_h:
        hx = (h, np.zeros(c_shape)) if cell.is_lstm else h
        with pytest.raises(ValueError):
            layer(x, hx)
    good_h = np.zeros(h_shape)
    with pytest.raises(TypeError):
        layer(x, (good_h.astype(complex), np.zeros(c_shape)) if cell.is_lstm
              else good_h.astype(complex))
    with pytest.raises(ValueError):                  # unbatched x, batched hx
        layer(x[:, 0], (good_h, np.zeros(c_shape)) if cell.is_lstm else good_h)
    if cell.is_lstm:
        with pytest.raises(ValueError):              # not a pair
            layer(x, good_h)
        with pytest.raises(ValueError):
            layer(x, (good_h,))
        with pytest.raises(ValueError):              # c of the wrong shape
            layer(x, (good_h, np.zeros(h_shape)))


@pytest.mark.parametrize("lengths", [
    [0, 3], [3, 6], [-1, 3], [3], [3, 3, 3], [[3, 3]], [2.0, 3.0], ["2", "3"], 3,
], ids=["zero", "too_long", "negative", "too_few", "too_many", "2d", "float", "strings",
        "scalar"])
def test_bad_lengths(error_backend, lengths):
    layer = fastrnn.LSTM(3, 4, backend=error_backend, seed=0)
    x = np.zeros((5, 2, 3))
    with pytest.raises(ValueError):
        layer(x, lengths=lengths)
    with pytest.raises(ValueError):
        layer.forward_train(x, lengths=np.array(lengths))


@pytest.mark.parametrize("wrap", ["ndarray", "batch_first_view", "memoryview", "torch"])
@pytest.mark.parametrize("backend, cell", cell_backend_params(
    [CELL_BY_NAME[n] for n in ("lstm", "gru")]))
def test_backward_does_not_see_later_changes_to_x(cell, backend, wrap, rng):
    """x is read without a copy where it can be (an ndarray of the layer's dtype, a
    buffer, a torch tensor): the cache keeps its own, so refilling the caller's x
    between forward_train and backward changes no gradient."""
    batch_first = wrap == "batch_first_view"
    layer = cell.make(3, 4, dtype="float32", backend=backend, seed=0,
                      batch_first=batch_first)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    held = {"ndarray": lambda a: a, "batch_first_view": lambda a: a.transpose(1, 0, 2),
            "memoryview": memoryview,
            "torch": lambda a: pytest.importorskip("torch").from_numpy(a)}[wrap](x)
    out = layer.forward_train(held)
    dy = rng.standard_normal(out[0].shape).astype(np.float32)
    same = x.copy().transpose(1, 0, 2) if batch_first else x.copy()
    expected = layer.backward(layer.forward_train(same)[-1], dy)
    x[:] = 0
    assert_close(layer.backward(out[-1], dy), expected, "float32", tol=0)


@pytest.mark.parametrize("backend, cell", cell_backend_params(SOME_CELLS))
def test_backward_twice_raises(backend, cell):
    layer = cell.make(3, 4, backend=backend, seed=0)
    _, _, cache = layer.forward_train(np.ones((5, 2, 3)))
    layer.backward(cache)
    with pytest.raises(ValueError):
        layer.backward(cache)


def test_backward_needs_this_layers_cache(error_backend):
    a = fastrnn.GRU(3, 4, backend=error_backend, seed=0)
    b = fastrnn.GRU(3, 4, backend=error_backend, seed=0)
    _, _, cache = a.forward_train(np.ones((5, 2, 3)))
    with pytest.raises(ValueError):
        b.backward(cache)
    with pytest.raises(ValueError):
        b.backward({"not": "a cache"})


@pytest.mark.parametrize("cell", [CELL_BY_NAME["rnn_relu"], CELL_BY_NAME["lstm"]], ids=str)
def test_backward_rejects_misshapen_gradients_and_keeps_the_cache(cell, error_backend, rng):
    layer = cell.make(3, 4, bidirectional=True, dtype="float64", backend=error_backend,
                      seed=0)
    x = rng.standard_normal((5, 2, 3))
    y, h_n, cache = layer.forward_train(x)
    dy, dh = random_like_outputs(rng, y, h_n)
    bad_dy = [dy[:-1], dy[..., :-1], dy[:, 0], dy.transpose(1, 0, 2)]
    if cell.is_lstm:
        bad_dh = [(dh[0][:1], dh[1]), (dh[0], dh[1][..., :-1]), dh[0], (dh[0],),
                  (dh[1], dh[0]) if dh[0].shape != dh[1].shape else (dh[0][:, :1], dh[1])]
    else:
        bad_dh = [dh[:1], dh[..., :-1], dh[0], (dh, dh)]
    for bad in bad_dy:
        with pytest.raises(ValueError):
            layer.backward(cache, bad, dh)
    for bad in bad_dh:
        with pytest.raises(ValueError):
            layer.backward(cache, dy, bad)
    # Rejected calls did not use the cache up.
    got = layer.backward(cache, dy, dh)
    _, expected = train_step(layer, x, None, None, dy, dh)
    assert_same_structure_equal(got, expected)


@pytest.mark.parametrize("backend, cell", cell_backend_params(CELLS))
def test_none_gradients_mean_zeros(backend, cell, rng):
    layer = cell.make(3, 4, num_layers=2, bidirectional=True, dtype="float64",
                      backend=backend, seed=0)
    x = rng.standard_normal((5, 2, 3))
    lengths = [5, 2]
    y, h_n = layer(x, lengths=lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    zeros_dh = tuple(np.zeros_like(a) for a in dh) if cell.is_lstm else np.zeros_like(dh)
    assert_same_structure_equal(train_step(layer, x, None, lengths, None, dh)[1],
                                train_step(layer, x, None, lengths, np.zeros_like(dy), dh)[1])
    assert_same_structure_equal(train_step(layer, x, None, lengths, dy, None)[1],
                                train_step(layer, x, None, lengths, dy, zeros_dh)[1])
    dx, dhx, grads = train_step(layer, x, None, lengths)[1]
    assert not np.any(dx)
    for a in (dhx if cell.is_lstm else (dhx,)):
        assert not np.any(a)
    for k, g in grads.items():
        assert not np.any(g), k
    # and a real gradient is not zero
    dx, _, grads = train_step(layer, x, None, lengths, dy, dh)[1]
    assert np.any(dx) and all(np.any(g) for g in grads.values())


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("cls", [fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU])
def test_an_empty_batch_gives_empty_answers(cls, backend):
    """B = 0: outputs, states and every gradient have the right (empty or zero) shapes."""
    layer = cls(3, 4, num_layers=2, bidirectional=True, backend=backend, seed=0)
    x = np.zeros((5, 0, 3), np.float32)
    y, h_n = layer(x, lengths=np.zeros(0, np.int64))
    assert y.shape == (5, 0, 8)
    for state in (h_n if isinstance(h_n, tuple) else (h_n,)):
        assert state.shape == (4, 0, 4)
    out = layer.forward_train(x)
    dx, _, grads = layer.backward(out[-1])
    assert dx.shape == x.shape
    assert all(not g.any() for g in grads.values())
