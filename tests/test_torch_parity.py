"""fastrnn against torch.nn.RNN/LSTM/GRU, torch interop, and hand-computed cells.

torch's gradients come from autograd on loss = sum(y * dy) + sum(h_n * dh_n)
(+ sum(c_n * dc_n)), which is what ``backward(cache, dy, dh_n)`` returns.  With
lengths, torch runs pack_padded_sequence(enforce_sorted=False) and
pad_packed_sequence(total_length=T), as the contract says.
"""

import math

import numpy as np
import pytest

import fastrnn

from conftest import (CELL_BY_NAME, CELLS, DTYPES, assert_close, cell_backend_params,
                      random_hx, random_lengths, random_like_outputs, state_shapes,
                      train_step)

# torch's own notice that its LSTMP runs without oneDNN.
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

TORCH_CELLS = [c for c in CELLS if c.torch_name is not None]


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    # Tiny problems: torch's own thread team only contends with fastrnn's and BLAS's.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def torch_module(torch, cell, I, H, dtype, seed, **kwargs):
    torch.manual_seed(seed)
    kw = dict(kwargs, dtype=getattr(torch, dtype))
    if cell.mode == "rnn":
        kw["nonlinearity"] = cell.nonlinearity
    if cell.proj:
        kw["proj_size"] = cell.proj_size(H)
    module = getattr(torch.nn, cell.torch_name)(I, H, **kw)
    with torch.no_grad():          # spread the weights a little wider than torch's init
        for p in module.parameters():
            p.mul_(1.5)
    return module


def fastrnn_layer(torch_mod, cell, backend):
    """from_torch for "auto"; for "reference" the same configuration, loaded from
    the module's state_dict (torch tensors)."""
    layer = fastrnn.from_torch(torch_mod)
    if backend == "auto":
        return layer
    ref = cell.make(layer.input_size, layer.hidden_size, num_layers=layer.num_layers,
                    bias=layer.bias, batch_first=layer.batch_first,
                    bidirectional=layer.bidirectional, dtype=layer.dtype,
                    dropout=layer.dropout, backend="reference")
    ref.load_state_dict(torch_mod.state_dict())
    return ref


def torch_run(torch, module, cell, x, hx, lengths, dy, dh):
    """Forward and autograd backward in torch; returns ((y, h_n), (dx, dhx, grads))."""
    module.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    lstm = cell.is_lstm
    hx_t = tuple(torch.tensor(a, requires_grad=True) for a in hx) if lstm else \
        torch.tensor(hx, requires_grad=True)
    if lengths is None:
        y, h_n = module(xt, hx_t)
    else:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
        packed = pack_padded_sequence(xt, torch.as_tensor(lengths), enforce_sorted=False,
                                      batch_first=module.batch_first)
        y, h_n = module(packed, hx_t)
        y, _ = pad_packed_sequence(y, batch_first=module.batch_first,
                                   total_length=x.shape[1 if module.batch_first else 0])
    loss = (y * torch.tensor(dy)).sum()
    if lstm:
        loss = loss + (h_n[0] * torch.tensor(dh[0])).sum() + (h_n[1] * torch.tensor(dh[1])).sum()
    else:
        loss = loss + (h_n * torch.tensor(dh)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    if lstm:
        return ((y.detach().numpy(), tuple(a.detach().numpy() for a in h_n)),
                (xt.grad.numpy(), tuple(a.grad.numpy() for a in hx_t), grads))
    return (y.detach().numpy(), h_n.detach().numpy()), (xt.grad.numpy(), hx_t.grad.numpy(),
                                                        grads)


def zeros_hx(layer, B, batched):
    h_shape, c_shape = state_shapes(layer, B, batched)
    h = np.zeros(h_shape, layer.dtype)
    return h if c_shape is None else (h, np.zeros(c_shape, layer.dtype))


def check_parity(torch, backend, cell, dtype, seed, *, T=5, B=3, I=4, H=5, num_layers=1,
                 bias=True, batch_first=False, bidirectional=False, use_lengths=False,
                 with_hx=False, unbatched=False):
    rng = np.random.default_rng(seed)
    module = torch_module(torch, cell, I, H, dtype, seed, num_layers=num_layers, bias=bias,
                          batch_first=batch_first, bidirectional=bidirectional)
    layer = fastrnn_layer(module, cell, backend)
    assert layer.backend == backend
    if unbatched:
        x = rng.standard_normal((T, I))
    else:
        x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    x = x.astype(dtype)
    lengths = random_lengths(rng, B, T) if use_lengths else None
    hx = random_hx(rng, layer, B, batched=not unbatched) if with_hx else None
    torch_hx = hx if with_hx else zeros_hx(layer, B, not unbatched)

    y, h_n = layer(x, hx, lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    (y_t, h_t), grads_t = torch_run(torch, module, cell, x, torch_hx, lengths, dy, dh)
    assert_close((y, h_n), (y_t, h_t), dtype, "inference")
    out, grads = train_step(layer, x, hx, lengths, dy, dh)
    assert_close(out, (y_t, h_t), dtype, "forward_train")
    assert_close(grads, grads_t, dtype, "backward")


NAMED_CONFIGS = {
    "plain": dict(),
    "with_hx": dict(with_hx=True),
    "deep_bidirectional": dict(num_layers=3, bidirectional=True, with_hx=True),
    "no_bias_batch_first": dict(num_layers=2, bias=False, batch_first=True, with_hx=True),
    "bidirectional_batch_first": dict(bidirectional=True, batch_first=True),
    "single_step_single_sequence": dict(T=1, B=1, with_hx=True, bidirectional=True),
    "odd_sizes": dict(T=6, B=5, I=1, H=17, num_layers=2),
}


@pytest.mark.parametrize("use_lengths", [False, True], ids=["padded", "lengths"])
@pytest.mark.parametrize("config", list(NAMED_CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, cell", cell_backend_params(TORCH_CELLS))
def test_matches_torch(torch, backend, cell, dtype, config, use_lengths):
    check_parity(torch, backend, cell, dtype, seed=11, use_lengths=use_lengths,
                 **NAMED_CONFIGS[config])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend, cell", cell_backend_params(TORCH_CELLS))
def test_matches_torch_unbatched(torch, backend, cell, dtype):
    check_parity(torch, backend, cell, dtype, seed=5, unbatched=True, num_layers=2,
                 bidirectional=True, with_hx=True)
    check_parity(torch, backend, cell, dtype, seed=6, unbatched=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("backend, cell", cell_backend_params(TORCH_CELLS))
def test_matches_torch_random_configurations(torch, backend, cell, seed):
    rng = np.random.default_rng(1000 + seed)
    H = int(rng.integers(2, 12))
    T = int(rng.integers(1, 9))
    check_parity(
        torch, backend, cell, str(rng.choice(DTYPES)), seed,
        T=T, B=int(rng.integers(1, 7)), I=int(rng.integers(1, 9)), H=H,
        num_layers=int(rng.integers(1, 4)), bias=bool(rng.integers(2)),
        batch_first=bool(rng.integers(2)), bidirectional=bool(rng.integers(2)),
        use_lengths=bool(rng.integers(2)), with_hx=bool(rng.integers(2)))


@pytest.mark.parametrize("backend, cell", cell_backend_params(TORCH_CELLS))
def test_inference_with_dropout_matches_torch_eval(torch, backend, cell):
    """A module trained with dropout converts, keeps its dropout, and infers like eval()."""
    rng = np.random.default_rng(2)
    module = torch_module(torch, cell, 3, 6, "float64", 2, num_layers=3, dropout=0.4,
                          bidirectional=True).eval()
    layer = fastrnn_layer(module, cell, backend)
    assert layer.dropout == pytest.approx(0.4)
    x = rng.standard_normal((5, 2, 3))
    y, h_n = layer(x)
    with torch.no_grad():
        y_t, h_t = module(torch.tensor(x))
    h_t = tuple(a.numpy() for a in h_t) if cell.is_lstm else h_t.numpy()
    assert_close((y, h_n), (y_t.numpy(), h_t), "float64")


# --------------------------------------------------------------------- interop

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_from_torch_keeps_configuration(torch, cell, dtype):
    module = torch_module(torch, cell, 3, 6, dtype, 0, num_layers=2, bias=False,
                          batch_first=True, bidirectional=True, dropout=0.25)
    layer = fastrnn.from_torch(module)
    assert isinstance(layer, cell.cls)
    assert (layer.input_size, layer.hidden_size, layer.num_layers) == (3, 6, 2)
    assert (layer.bias, layer.batch_first, layer.bidirectional) == (False, True, True)
    assert layer.dropout == pytest.approx(0.25)
    assert layer.dtype == np.dtype(dtype)
    if cell.mode == "rnn":
        assert layer.nonlinearity == cell.nonlinearity
    if cell.is_lstm:
        assert layer.proj_size == cell.proj_size(6)
    if cell.mode == "gru":
        assert layer.reset_after
    torch_sd = module.state_dict()
    sd = layer.state_dict()
    assert list(sd) == list(torch_sd)
    for name, value in sd.items():
        assert value.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(value, torch_sd[name].numpy(), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_to_torch_round_trip_is_exact(torch, cell, dtype):
    layer = cell.make(4, 6, num_layers=2, bidirectional=True, batch_first=True,
                      dropout=0.1, dtype=dtype, seed=3)
    module = layer.to_torch()
    assert isinstance(module, getattr(torch.nn, cell.torch_name))
    assert (module.input_size, module.hidden_size, module.num_layers) == (4, 6, 2)
    assert (module.bias, module.batch_first, module.bidirectional) == (True, True, True)
    assert module.dropout == pytest.approx(0.1)
    if cell.mode == "rnn":
        assert module.nonlinearity == cell.nonlinearity
    if cell.is_lstm:
        assert module.proj_size == layer.proj_size
    torch_sd = module.state_dict()
    assert list(torch_sd) == list(layer.state_dict())
    for name, value in layer.state_dict().items():
        assert torch_sd[name].dtype == getattr(torch, dtype)
        np.testing.assert_array_equal(torch_sd[name].numpy(), value, err_msg=name)
    back = fastrnn.from_torch(module)
    assert type(back) is type(layer)
    assert repr(back) == repr(layer)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(back.params[name], value, err_msg=name)
    # The module owns its weights: changing them leaves the layer alone.
    before = layer.state_dict()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    for name, value in before.items():
        np.testing.assert_array_equal(layer.params[name], value, err_msg=name)


@pytest.mark.parametrize("cell, option", [(CELL_BY_NAME["rnn_sigmoid"], "sigmoid"),
                                          (CELL_BY_NAME["gru_reset_before"], "reset_after")],
                         ids=["rnn_sigmoid", "gru_reset_before"])
def test_to_torch_refuses_what_torch_cannot_express(torch, cell, option):
    layer = cell.make(2, 3, seed=0)
    with pytest.raises(NotImplementedError, match=option):
        layer.to_torch()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_from_torch_refuses_unsupported_dtypes(torch, dtype):
    module = torch.nn.GRU(2, 3, dtype=getattr(torch, dtype))
    with pytest.raises(NotImplementedError, match=dtype):
        fastrnn.from_torch(module)


# ------------------------------------------------------------ hand-computed cells

# Values of size ~1 through a few roundings each (libm's exp/tanh against the kernels').
HAND = dict(rtol=1e-13, atol=1e-15)


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def one_unit(cell, backend, state_dict, **kwargs):
    """A layer with input_size = 1 and the given (scalar-filled) weights, float64."""
    hidden = kwargs.pop("hidden_size", 1)
    layer = cell.make(1, hidden, dtype="float64", backend=backend, seed=0, **kwargs)
    layer.load_state_dict(state_dict)
    return layer


BACKEND_PARAMS = ["auto", "reference"]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_hand_computed_sigmoid_rnn_forward_and_gradient(backend):
    w_ih, w_hh, b_ih, b_hh, h0 = 0.5, -0.3, 0.1, 0.2, 0.4
    x1, x2 = 1.0, -2.0
    layer = one_unit(CELL_BY_NAME["rnn_sigmoid"], backend,
                     {"weight_ih_l0": [[w_ih]], "weight_hh_l0": [[w_hh]],
                      "bias_ih_l0": [b_ih], "bias_hh_l0": [b_hh]})
    h1 = sig(w_ih * x1 + b_ih + w_hh * h0 + b_hh)
    h2 = sig(w_ih * x2 + b_ih + w_hh * h1 + b_hh)
    x = np.array([[[x1]], [[x2]]])
    hx = np.array([[[h0]]])
    y, h_n = layer(x, hx)
    np.testing.assert_allclose(y.ravel(), [h1, h2], **HAND)
    np.testing.assert_allclose(h_n.ravel(), [h2], **HAND)

    # L = h_2: dL/da2 = s2, dL/da1 = s2 * w_hh * s1 with s = h (1 - h).
    s1, s2 = h1 * (1 - h1), h2 * (1 - h2)
    _, _, cache = layer.forward_train(x, hx)
    dx, dh0, grads = layer.backward(cache, None, np.ones((1, 1, 1)))
    da1 = s2 * w_hh * s1
    np.testing.assert_allclose(grads["weight_ih_l0"].ravel(), [s2 * x2 + da1 * x1], **HAND)
    np.testing.assert_allclose(grads["weight_hh_l0"].ravel(), [s2 * h1 + da1 * h0], **HAND)
    np.testing.assert_allclose(grads["bias_ih_l0"].ravel(), [s2 + da1], **HAND)
    np.testing.assert_allclose(grads["bias_hh_l0"].ravel(), [s2 + da1], **HAND)
    np.testing.assert_allclose(dx.ravel(), [da1 * w_ih, s2 * w_ih], **HAND)
    np.testing.assert_allclose(dh0.ravel(), [da1 * w_hh], **HAND)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_hand_computed_relu_rnn_two_units(backend):
    # h' = relu(W_ih x + b_ih + W_hh h + b_hh), H = 2
    layer = one_unit(CELL_BY_NAME["rnn_relu"], backend,
                     {"weight_ih_l0": [[1.0], [-1.0]], "weight_hh_l0": [[0.5, -0.25], [2.0, 1.0]],
                      "bias_ih_l0": [0.1, 0.0], "bias_hh_l0": [0.0, 0.3]}, hidden_size=2)
    x = np.array([[[2.0]], [[1.0]]])
    # step 1 from h0 = 0: [2 + 0.1, -2 + 0.3] -> relu -> [2.1, 0]
    # step 2: [1 + 0.1 + 0.5*2.1 - 0.25*0, -1 + 0.3 + 2*2.1 + 0] = [2.15, 3.5]
    y, h_n = layer(x)
    np.testing.assert_allclose(y[:, 0], [[2.1, 0.0], [2.15, 3.5]], **HAND)
    np.testing.assert_allclose(h_n[0, 0], [2.15, 3.5], **HAND)


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_hand_computed_gru(backend, reset_after):
    w_ir, w_iz, w_in = 0.6, -0.4, 1.2
    w_hr, w_hz, w_hn = 0.3, 0.8, -0.7
    b_ir, b_iz, b_in = 0.05, -0.1, 0.2
    c_hr, c_hz, c_hn = -0.2, 0.15, 0.5
    cell = CELL_BY_NAME["gru" if reset_after else "gru_reset_before"]
    layer = one_unit(cell, backend, {
        "weight_ih_l0": [[w_ir], [w_iz], [w_in]], "weight_hh_l0": [[w_hr], [w_hz], [w_hn]],
        "bias_ih_l0": [b_ir, b_iz, b_in], "bias_hh_l0": [c_hr, c_hz, c_hn]})
    h = 0.3
    expected = []
    for x in (0.7, -1.1, 0.4):
        r = sig(w_ir * x + b_ir + w_hr * h + c_hr)
        z = sig(w_iz * x + b_iz + w_hz * h + c_hz)
        if reset_after:
            n = math.tanh(w_in * x + b_in + r * (w_hn * h + c_hn))
        else:
            n = math.tanh(w_in * x + b_in + w_hn * (r * h) + c_hn)
        h = (1 - z) * n + z * h
        expected.append(h)
    y, h_n = layer(np.array([0.7, -1.1, 0.4]).reshape(3, 1), np.array([[0.3]]))  # unbatched
    np.testing.assert_allclose(y.ravel(), expected, **HAND)
    np.testing.assert_allclose(h_n.ravel(), expected[-1:], **HAND)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_hand_computed_lstm(backend):
    wi = [0.5, -0.5, 1.0, 0.25]          # i, f, g, o
    wh = [0.1, 0.2, -0.3, 0.4]
    bi = [0.0, 1.0, 0.0, -0.5]
    bh = [0.1, 0.0, 0.2, 0.0]
    layer = one_unit(CELL_BY_NAME["lstm"], backend, {
        "weight_ih_l0": [[v] for v in wi], "weight_hh_l0": [[v] for v in wh],
        "bias_ih_l0": bi, "bias_hh_l0": bh})
    h, c = -0.2, 0.6
    expected_h, expected_c = [], []
    for x in (1.0, 0.5):
        a = [wi[k] * x + bi[k] + wh[k] * h + bh[k] for k in range(4)]
        i, f, g, o = sig(a[0]), sig(a[1]), math.tanh(a[2]), sig(a[3])
        c = f * c + i * g
        h = o * math.tanh(c)
        expected_h.append(h)
        expected_c.append(c)
    y, (h_n, c_n) = layer(np.array([[[1.0]], [[0.5]]]),
                          (np.array([[[-0.2]]]), np.array([[[0.6]]])))
    np.testing.assert_allclose(y.ravel(), expected_h, **HAND)
    np.testing.assert_allclose(h_n.ravel(), expected_h[-1:], **HAND)
    np.testing.assert_allclose(c_n.ravel(), expected_c[-1:], **HAND)


@pytest.mark.parametrize("backend, cell", cell_backend_params([CELL_BY_NAME["lstm_proj"]]))
def test_hand_computed_lstm_with_projection(backend, cell):
    # H = 2 cell units projected to P = 1: h = W_hr (o * tanh(c)).
    layer = cell.make(1, 2, dtype="float64", backend=backend, seed=0)
    assert layer.proj_size == 1
    w_ih = [0.5, -0.5, 1.0, 0.3, -1.0, 0.7, 0.25, 0.9]     # i1 i2 f1 f2 g1 g2 o1 o2
    w_hh = [0.1, 0.2, -0.3, 0.4, 0.05, -0.6, 0.2, 0.0]
    w_hr = [0.8, -1.5]
    layer.load_state_dict({"weight_ih_l0": np.reshape(w_ih, (8, 1)),
                           "weight_hh_l0": np.reshape(w_hh, (8, 1)),
                           "bias_ih_l0": np.zeros(8), "bias_hh_l0": np.zeros(8),
                           "weight_hr_l0": [w_hr]})
    h, c = 0.0, [0.0, 0.0]
    hs = []
    for x in (1.0, -0.5):
        r = []
        for j in range(2):
            a = [w_ih[2 * k + j] * x + w_hh[2 * k + j] * h for k in range(4)]
            i, f, g, o = sig(a[0]), sig(a[1]), math.tanh(a[2]), sig(a[3])
            c[j] = f * c[j] + i * g
            r.append(o * math.tanh(c[j]))
        h = w_hr[0] * r[0] + w_hr[1] * r[1]
        hs.append(h)
    y, (h_n, c_n) = layer(np.array([[[1.0]], [[-0.5]]]))
    assert y.shape == (2, 1, 1) and c_n.shape == (1, 1, 2)
    np.testing.assert_allclose(y.ravel(), hs, **HAND)
    np.testing.assert_allclose(h_n.ravel(), hs[-1:], **HAND)
    np.testing.assert_allclose(c_n.ravel(), c, **HAND)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_hand_computed_bidirectional_with_lengths(backend):
    """1-unit tanh RNN, bidirectional, lengths (3, 1): the backward direction of the
    short sequence starts at its own (only) step; padded outputs are 0."""
    w_f, u_f, w_b, u_b = 0.9, 0.5, -0.8, 0.3
    layer = one_unit(CELL_BY_NAME["rnn_tanh"], backend, {
        "weight_ih_l0": [[w_f]], "weight_hh_l0": [[u_f]],
        "weight_ih_l0_reverse": [[w_b]], "weight_hh_l0_reverse": [[u_b]]},
        bidirectional=True, bias=False)
    xs = [1.0, -2.0, 0.5]
    x = np.array([[[xs[0]], [4.0]], [[xs[1]], [9.0]], [[xs[2]], [-9.0]]])   # (T=3, B=2, 1)
    fwd, h = [], 0.0
    for v in xs:
        h = math.tanh(w_f * v + u_f * h)
        fwd.append(h)
    bwd, h = [0.0] * 3, 0.0
    for t in (2, 1, 0):
        h = math.tanh(w_b * xs[t] + u_b * h)
        bwd[t] = h
    short_f, short_b = math.tanh(w_f * 4.0), math.tanh(w_b * 4.0)
    y, h_n = layer(x, lengths=np.array([3, 1]))
    np.testing.assert_allclose(y[:, 0], np.column_stack([fwd, bwd]), **HAND)
    np.testing.assert_allclose(y[:, 1], [[short_f, short_b], [0, 0], [0, 0]], **HAND)
    np.testing.assert_allclose(h_n[:, :, 0], [[fwd[-1], short_f], [bwd[0], short_b]], **HAND)
