"""Embedding, Dense, FinalState, Dropout and Sequential: gradients against finite
differences (float64), whole-model gradients against torch, names, checks, errors.

The torch side is written out here (nn.Embedding, the layer's torch twin,
nn.Linear, pack_padded_sequence) rather than taken from ``Sequential.to_torch``,
which gets its own parity test.
"""

import numpy as np
import pytest

import fastrnn
from fastrnn._layers import RNNBase
from fastrnn.models import Dense, Dropout, Embedding, FinalState, Sequential

from conftest import assert_close

ACTIVATIONS = (None, "relu", "tanh", "sigmoid", "softmax")
FD_STEP = 1e-6
FD_RTOL = 1e-7


# ------------------------------------------------------------------ helpers
def numeric_grad(f, array, index):
    """Central difference of the scalar f() in array[index]."""
    saved = array[index]
    array[index] = saved + FD_STEP
    up = f()
    array[index] = saved - FD_STEP
    down = f()
    array[index] = saved
    return (up - down) / (2 * FD_STEP)


def check_fd(f, array, analytic, rng, n_entries=12):
    """Compare ``analytic`` (array's shape) with finite differences at a few entries."""
    flat = [np.unravel_index(i, array.shape)
            for i in rng.choice(array.size, min(n_entries, array.size), replace=False)]
    numeric = np.array([numeric_grad(f, array, i) for i in flat])
    exact = np.array([analytic[i] for i in flat])
    scale = max(1.0, np.abs(exact).max())
    np.testing.assert_allclose(exact, numeric, rtol=FD_RTOL, atol=FD_RTOL * scale)


# --------------------------------------------------------- block gradients
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 4)], ids=["rows", "sequence"])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradients_match_finite_differences(rng, activation, shape, bias):
    dense = Dense(4, 3, activation=activation, bias=bias, dtype="float64", seed=1)
    x = rng.standard_normal(shape)
    dout = rng.standard_normal(shape[:-1] + (3,))
    out, cache = dense.forward_train(x)
    dx, grads = dense.backward(cache, dout)
    assert list(grads) == list(dense.state_dict())

    def loss():
        return float(np.sum(dense(x) * dout))
    check_fd(loss, x, dx, rng)
    for name, value in dense.params.items():
        check_fd(loss, value, grads[name], rng)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_logits_path_returns_pre_activation_and_its_gradient(rng, activation):
    dense = Dense(4, 3, activation=activation, dtype="float64", seed=1)
    x = rng.standard_normal((5, 4))
    dz = rng.standard_normal((5, 3))
    z, cache = dense.forward_train(x, logits=True)
    np.testing.assert_allclose(z, x @ dense.params["weight"].T + dense.params["bias"],
                               rtol=1e-14)
    dx, grads = dense.backward(cache, dz)
    np.testing.assert_allclose(dx, dz @ dense.params["weight"], rtol=1e-13)
    np.testing.assert_allclose(grads["weight"], dz.T @ x, rtol=1e-13)


def test_dense_softmax_is_stable_for_large_logits():
    dense = Dense(1, 3, activation="softmax", dtype="float64", seed=0)
    dense.load_state_dict({"weight": [[1000.0], [0.0], [-1000.0]], "bias": [0.0, 0.0, 0.0]})
    out = dense(np.array([[1.0], [-1.0]]))
    np.testing.assert_allclose(out, [[1, 0, 0], [0, 0, 1]], atol=1e-300)


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_gradient_matches_finite_differences(rng, padding_idx):
    emb = Embedding(7, 3, padding_idx=padding_idx, dtype="float64", seed=0)
    tokens = rng.integers(0, 7, (4, 6))
    tokens[0, :3] = 2                               # repeated ids sum their gradients
    dout = rng.standard_normal((4, 6, 3))
    out, cache = emb.forward_train(tokens)
    dx, grads = emb.backward(cache, dout)
    assert dx is None

    def loss():
        return float(np.sum(emb(tokens) * dout))
    expected = grads["weight"].copy()
    if padding_idx is not None:
        assert not np.any(grads["weight"][padding_idx])
        # finite differences see the padding row's real effect; the gradient is
        # zeroed on purpose (as torch does), so compare the other rows.
        expected[padding_idx] = 0
    numeric = np.zeros_like(expected)
    weight = emb.params["weight"]
    for index in np.ndindex(weight.shape):
        if index[0] != padding_idx:
            numeric[index] = numeric_grad(loss, weight, index)
    np.testing.assert_allclose(expected, numeric, rtol=FD_RTOL, atol=FD_RTOL)


def test_embedding_padding_idx_like_torch(rng):
    torch = pytest.importorskip("torch")
    emb = Embedding(6, 4, padding_idx=1, dtype="float64", seed=3)
    assert not np.any(emb.params["weight"][1])
    module = torch.nn.Embedding(6, 4, padding_idx=1, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(emb.params["weight"]))
    tokens = np.array([[1, 2, 1, 5], [0, 1, 1, 3]])
    dout = rng.standard_normal((2, 4, 4))
    out, cache = emb.forward_train(tokens)
    (module(torch.from_numpy(tokens)) * torch.from_numpy(dout)).sum().backward()
    np.testing.assert_array_equal(out, module(torch.from_numpy(tokens)).detach().numpy())
    np.testing.assert_allclose(emb.backward(cache, dout)[1]["weight"],
                               module.weight.grad.numpy(), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("structure", ["rnn", "lstm_bi_2layers"])
def test_final_state_gradient_matches_finite_differences(rng, structure):
    D = 2 if structure == "lstm_bi_2layers" else 1
    h = rng.standard_normal((2 * D, 3, 4))
    h_n = (h, rng.standard_normal((2 * D, 3, 4))) if D == 2 else h
    final = FinalState()
    out, cache = final.forward_train(h_n, num_directions=D)
    np.testing.assert_array_equal(out, np.concatenate(list(h[-D:]), axis=-1))
    dout = rng.standard_normal(out.shape)
    d_h_n, grads = final.backward(cache, dout)
    assert grads == {}
    d_h = d_h_n[0] if D == 2 else d_h_n
    if D == 2:
        assert not np.any(d_h_n[1])

    def loss():
        return float(np.sum(final(h_n, num_directions=D) * dout))
    check_fd(loss, h, d_h, rng, n_entries=h.size)


def test_dropout_gradient_matches_finite_differences(rng):
    x = rng.standard_normal((4, 5, 3))
    dout = rng.standard_normal(x.shape)
    block = Dropout(0.4, seed=7)
    out, cache = block.forward_train(x)
    dx, grads = block.backward(cache, dout)
    assert grads == {}
    kept = out != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(out[kept], x[kept] / 0.6, rtol=1e-15)

    def loss():          # the same seed draws the same mask
        return float(np.sum(Dropout(0.4, seed=7).forward_train(x)[0] * dout))
    check_fd(loss, x, dx, rng, n_entries=20)
    np.testing.assert_array_equal(block(x), x)          # inference is the identity


# ------------------------------------------------------ Sequential vs torch
def _torch_reference(torch, model, x, lengths, dout):
    """Output and parameter gradients of the torch equivalent of ``model``, written
    out item by item; returns (out, {"{i}.{name}": grad})."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    modules = torch.nn.ModuleDict()
    for i, item in enumerate(model.items):
        if isinstance(item, Embedding):
            modules[str(i)] = torch.nn.Embedding(item.num_embeddings, item.embedding_dim,
                                                 padding_idx=item.padding_idx,
                                                 dtype=torch.float64)
        elif isinstance(item, RNNBase):
            modules[str(i)] = item.to_torch()
        elif isinstance(item, Dense):
            modules[str(i)] = torch.nn.Linear(item.in_features, item.out_features,
                                              bias=item.bias, dtype=torch.float64)
    modules.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    acts = {None: lambda z: z, "relu": torch.relu, "tanh": torch.tanh,
            "sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, -1)}
    h = torch.from_numpy(x)
    T = x.shape[1]
    for i, item in enumerate(model.items):
        if isinstance(item, Embedding | Dense):
            h = modules[str(i)](h)
            if isinstance(item, Dense):
                h = acts[item.activation](h)
        elif isinstance(item, FinalState):
            state = h_n[0] if isinstance(h_n, tuple) else h_n
            h = torch.cat(list(state[-directions:]), dim=-1)
        elif not isinstance(item, Dropout):
            directions = item.num_directions
            if lengths is None:
                h, h_n = modules[str(i)](h)
            else:
                packed = pack_padded_sequence(h, torch.from_numpy(lengths), batch_first=True,
                                              enforce_sorted=False)
                out, h_n = modules[str(i)](packed)
                h, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    weight = torch.from_numpy(dout)
    if lengths is not None and h.dim() == 3:        # padded steps' gradients are ignored
        weight = weight * torch.from_numpy(
            (np.arange(T)[None, :] < lengths[:, None])[:, :, None].astype(np.float64))
    (h * weight).sum().backward()
    return h.detach().numpy(), {k: p.grad.numpy() for k, p in modules.named_parameters()}


def _models(dtype="float64"):
    """name -> (model, token input?)"""
    kw = dict(dtype=dtype)
    return {
        "classifier_lstm": (Sequential([
            Embedding(11, 5, padding_idx=0, seed=1, **kw),
            fastrnn.LSTM(5, 6, batch_first=True, seed=2, **kw),
            FinalState(),
            Dense(6, 4, activation="softmax", seed=3, **kw)]), True),
        "regressor_stack": (Sequential([
            fastrnn.RNN(3, 7, batch_first=True, seed=4, **kw),
            fastrnn.GRU(7, 5, batch_first=True, bidirectional=True, seed=5, **kw),
            FinalState(),
            Dropout(0.0),
            Dense(10, 8, activation="relu", seed=6, **kw),
            Dense(8, 1, seed=7, **kw)]), False),
        "lstm_2layers_bi": (Sequential([
            fastrnn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=8,
                         **kw),
            FinalState(),
            Dense(8, 2, activation="sigmoid", seed=9, **kw)]), False),
        "per_step": (Sequential([
            Embedding(9, 4, seed=10, **kw),
            fastrnn.GRU(4, 5, batch_first=True, seed=11, **kw),
            Dense(5, 3, activation="tanh", seed=12, **kw)]), True),
    }


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("name", list(_models()))
def test_sequential_gradients_match_torch(rng, name, with_lengths):
    torch = pytest.importorskip("torch")
    model, tokens = _models()[name]
    B, T = 5, 7
    x = rng.integers(0, 9, (B, T)) if tokens else rng.standard_normal((B, T, 3))
    lengths = np.array([7, 1, 4, 7, 3]) if with_lengths else None
    out, cache = model.forward_train(x, lengths)
    dout = rng.standard_normal(out.shape)
    dx, grads = model.backward(cache, dout)
    expected_out, expected_grads = _torch_reference(torch, model, x, lengths, dout)
    assert list(grads) == list(model.state_dict()) == list(expected_grads)
    assert_close(out, expected_out, "float64", "out", tol=1e-10)
    assert_close(grads, expected_grads, "float64", "grads", tol=1e-10)
    assert (dx is None) == tokens
    if not tokens:
        assert dx.shape == x.shape
    np.testing.assert_array_equal(model(x, lengths), out)


def test_sequential_input_gradient_matches_finite_differences(rng):
    model, _ = _models()["regressor_stack"]
    x = rng.standard_normal((3, 5, 3))
    lengths = np.array([5, 2, 4])
    dout = rng.standard_normal((3, 1))
    out, cache = model.forward_train(x, lengths)
    dx, grads = model.backward(cache, dout)

    def loss():
        return float(np.sum(model(x, lengths) * dout))
    check_fd(loss, x, dx, rng, n_entries=20)
    assert not np.any(dx[1, 2:]) and not np.any(dx[2, 4:])      # padded steps
    check_fd(loss, model.params["4.weight"], grads["4.weight"], rng)


def test_sequential_float32_matches_torch(rng):
    torch = pytest.importorskip("torch")
    model = Sequential([Embedding(20, 8, seed=0), fastrnn.LSTM(8, 16, batch_first=True, seed=1),
                        FinalState(), Dense(16, 5, activation="softmax", seed=2)])
    x = rng.integers(0, 20, (6, 9))
    out, cache = model.forward_train(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    _, grads = model.backward(cache, dout)
    twin = model.to_torch()
    torch_out = twin(torch.from_numpy(x))
    (torch_out * torch.from_numpy(dout)).sum().backward()
    assert_close(out, torch_out.detach().numpy(), "float32", "out")
    assert_close(grads, {k: p.grad.numpy() for k, p in twin.named_parameters()}, "float32",
                 "grads")


# ------------------------------------------------------------ mask_zero
def _front_aligned(tokens):
    """Each row's nonzero tokens moved to the front, in order; and their counts."""
    out = np.zeros_like(tokens)
    counts = (tokens != 0).sum(1)
    for b, row in enumerate(tokens):
        out[b, :counts[b]] = row[row != 0]
    return out, counts


@pytest.mark.parametrize("returns_sequences", [False, True], ids=["final", "sequence"])
def test_mask_zero_equals_lengths_on_front_aligned_tokens(rng, returns_sequences):
    """Zeros anywhere (front, back, between) are skipped: the model equals the same
    model given the front-aligned tokens and their lengths, gradients included."""
    def build(mask_zero):
        items = [Embedding(12, 4, dtype="float64", seed=0, mask_zero=mask_zero),
                 fastrnn.GRU(4, 5, batch_first=True, bidirectional=True, dtype="float64",
                             seed=1)]
        items += [] if returns_sequences else [FinalState()]
        return Sequential(items + [Dense(10, 3, dtype="float64", seed=2)])
    tokens = rng.integers(1, 12, (4, 8))
    tokens[0, :5] = 0                                 # pre-padded
    tokens[1, 6:] = 0                                 # post-padded
    tokens[2, [1, 4, 5]] = 0                          # holes
    masked, plain = build(True), build(False)
    front, counts = _front_aligned(tokens)
    out, cache = masked.forward_train(tokens)
    ref, ref_cache = plain.forward_train(front, counts)
    dout = rng.standard_normal(out.shape)
    if returns_sequences:
        real = tokens != 0
        for b in range(4):          # output step t of row b shows front-aligned step rank
            np.testing.assert_allclose(out[b, real[b]], ref[b, :counts[b]], rtol=1e-14)
        ref_dout = np.zeros_like(dout)
        for b in range(4):
            ref_dout[b, :counts[b]] = dout[b, real[b]]
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-14)
        ref_dout = dout
    _, grads = masked.backward(cache, dout)
    _, ref_grads = plain.backward(ref_cache, ref_dout)
    assert_close(grads, ref_grads, "float64", tol=1e-12)


def test_mask_zero_empty_rows_give_zero_states(rng):
    model = Sequential([Embedding(6, 3, mask_zero=True, dtype="float64", seed=0),
                        fastrnn.LSTM(3, 4, batch_first=True, dtype="float64", seed=1),
                        FinalState(), Dense(4, 2, dtype="float64", seed=2)])
    tokens = np.array([[0, 0, 0], [1, 2, 0]])
    out, cache = model.forward_train(tokens)
    np.testing.assert_allclose(out[0], model.params["3.bias"], rtol=1e-15)
    _, grads = model.backward(cache, np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert not any(np.any(g) for k, g in grads.items() if not k.startswith("3."))


def test_masked_output_previous_repeats_the_last_real_output(rng):
    model = Sequential([Embedding(6, 3, mask_zero=True, dtype="float64", seed=0),
                        fastrnn.RNN(3, 4, batch_first=True, dtype="float64", seed=1)],
                       masked_output="previous")
    tokens = np.array([[0, 3, 0, 4, 0], [5, 1, 0, 0, 0]])
    out = model(tokens)
    np.testing.assert_array_equal(out[0, 0], 0)
    np.testing.assert_array_equal(out[0, 2], out[0, 1])
    np.testing.assert_array_equal(out[0, 4], out[0, 3])
    np.testing.assert_array_equal(out[1, 2:], np.broadcast_to(out[1, 1], (3, 4)))
    assert not np.array_equal(out[0, 1], out[0, 3])


def test_to_torch_matches_with_mask_zero_and_lengths(rng):
    torch = pytest.importorskip("torch")
    model = Sequential([Embedding(12, 4, mask_zero=True, dtype="float64", seed=0),
                        fastrnn.LSTM(4, 5, batch_first=True, dtype="float64", seed=1),
                        Dense(5, 3, activation="softmax", dtype="float64", seed=2)],
                       masked_output="previous")
    tokens = rng.integers(1, 12, (4, 6))
    tokens[0, :3] = 0
    tokens[1, [2, 5]] = 0
    tokens[2] = 0
    twin = model.to_torch()
    assert [k for k, _ in twin.named_parameters()] == list(model.state_dict())
    np.testing.assert_allclose(twin(torch.from_numpy(tokens)).detach().numpy(), model(tokens),
                               rtol=1e-12, atol=1e-14)


def test_to_torch_with_mask_zero_and_no_recurrent_layer_keeps_positions(rng):
    """The mask moves real tokens to the front only for recurrent layers; without
    one the twin must work per position, as the model does."""
    torch = pytest.importorskip("torch")
    model = Sequential([Embedding(6, 3, mask_zero=True, dtype="float64", seed=0),
                        Dense(3, 2, dtype="float64", seed=1)])
    tokens = np.array([[1, 0, 2], [0, 4, 5]])
    expected = model[1](model[0](tokens))
    np.testing.assert_allclose(model(tokens), expected, rtol=1e-15)
    np.testing.assert_allclose(model.to_torch()(torch.from_numpy(tokens)).detach().numpy(),
                               expected, rtol=1e-12)


# ------------------------------------------------------ names and parameters
def test_state_dict_names_are_torch_sequential_names():
    torch = pytest.importorskip("torch")
    model = Sequential([Embedding(10, 4), fastrnn.LSTM(4, 6, batch_first=True), FinalState(),
                        Dropout(0.5), Dense(6, 3)])
    reference = torch.nn.Sequential(torch.nn.Embedding(10, 4),
                                    torch.nn.LSTM(4, 6, batch_first=True),
                                    torch.nn.Identity(), torch.nn.Dropout(0.5),
                                    torch.nn.Linear(6, 3))
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == expected
    assert list(model.state_dict()) == list(expected)
    assert all(model.params[k] is model.items[int(k.split(".")[0])].params[k.split(".", 1)[1]]
               for k in model.params)


def test_load_state_dict_round_trip_and_failed_load_changes_nothing(rng):
    model = Sequential([Embedding(10, 4, seed=0), fastrnn.GRU(4, 6, batch_first=True, seed=1),
                        FinalState(), Dense(6, 3, seed=2)])
    other = Sequential([Embedding(10, 4, seed=5), fastrnn.GRU(4, 6, batch_first=True, seed=6),
                        FinalState(), Dense(6, 3, seed=7)])
    other.load_state_dict(model.state_dict())
    x = rng.integers(0, 10, (3, 5))
    np.testing.assert_array_equal(other(x), model(x))
    before = other.state_dict()
    bad = dict(model.state_dict())
    bad["0.weight"] = bad["0.weight"] + 1
    bad["3.bias"] = np.zeros(4)                              # misshapen, after a good one
    with pytest.raises(ValueError, match="3.bias"):
        other.load_state_dict(bad)
    with pytest.raises(KeyError, match="3.weight"):
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k != "3.weight"})
    with pytest.raises(KeyError, match="9.weight"):
        other.load_state_dict({**model.state_dict(), "9.weight": np.zeros(1)})
    for k, v in before.items():
        np.testing.assert_array_equal(other.params[k], v)


# ------------------------------------------------------------------ errors
def test_structure_errors():
    lstm = fastrnn.LSTM(4, 6, batch_first=True)
    with pytest.raises(ValueError, match="batch_first"):
        Sequential([fastrnn.LSTM(4, 6)])
    with pytest.raises(ValueError, match="FinalState must follow"):
        Sequential([Dense(4, 4), FinalState()])
    with pytest.raises(ValueError, match="first item"):
        Sequential([lstm, Embedding(5, 4)])
    with pytest.raises(ValueError, match="expects 5 input features"):
        Sequential([Embedding(10, 4), lstm, FinalState(), Dense(5, 2)])
    with pytest.raises(ValueError, match="needs sequences"):
        Sequential([lstm, FinalState(), fastrnn.GRU(6, 2, batch_first=True)])
    with pytest.raises(ValueError, match="share one dtype"):
        Sequential([lstm, FinalState(), Dense(6, 2, dtype="float64")])
    with pytest.raises(TypeError, match="Sequential takes"):
        Sequential([lstm, "relu"])
    with pytest.raises(ValueError, match="activation"):
        Dense(3, 2, activation="gelu")
    with pytest.raises(ValueError, match="p must be"):
        Dropout(1.5)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(5, 2, padding_idx=5)


def test_input_errors(rng):
    model = Sequential([Embedding(10, 4, mask_zero=True), fastrnn.GRU(4, 6, batch_first=True),
                        FinalState(), Dense(6, 3, activation="softmax")])
    with pytest.raises(ValueError, match="token id 10 is out of range"):
        model(np.array([[1, 10]]))
    with pytest.raises(ValueError, match="token id -1"):
        model(np.array([[1, -1]]))
    with pytest.raises(ValueError, match="whole numbers"):
        model(np.array([[1.5, 2.0]]))
    with pytest.raises(TypeError, match="integers"):
        model(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="not both"):
        model(np.array([[1, 2]]), lengths=np.array([2]))
    np.testing.assert_array_equal(model(np.array([[1.0, 2.0]])), model(np.array([[1, 2]])))
    floats = Sequential([fastrnn.RNN(3, 4, batch_first=True), Dense(4, 2)])
    with pytest.raises(ValueError, match="lengths must lie"):
        floats(np.zeros((2, 5, 3)), lengths=np.array([5, 6]))
    with pytest.raises(ValueError, match="input_size=3"):
        floats(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="logits=True needs a Dense"):
        Sequential([fastrnn.RNN(3, 4, batch_first=True)])(np.zeros((1, 2, 3)), logits=True)


def test_caches_serve_one_backward(rng):
    model = Sequential([fastrnn.RNN(3, 4, batch_first=True), FinalState(), Dense(4, 2)])
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    out, cache = model.forward_train(x)
    with pytest.raises(ValueError, match="expected shape"):
        model.backward(cache, np.ones((2, 3)))
    model.backward(cache, np.ones_like(out))
    with pytest.raises(ValueError, match="already served"):
        model.backward(cache, np.ones_like(out))
    other = Sequential([fastrnn.RNN(3, 4, batch_first=True), FinalState(), Dense(4, 2)])
    with pytest.raises(ValueError, match="cache of this"):
        other.backward(model.forward_train(x)[1], np.ones_like(out))
    dense = Dense(3, 2)
    _, dense_cache = dense.forward_train(np.ones((1, 3)))
    dense.backward(dense_cache, np.ones((1, 2)))
    with pytest.raises(ValueError, match="already served"):
        dense.backward(dense_cache, np.ones((1, 2)))


@pytest.mark.parametrize("wrap", ["ndarray", "memoryview", "torch"])
def test_forward_train_does_not_see_later_changes_to_the_input(wrap, rng):
    """Whatever holds the caller's x (a NumPy array, any buffer, a torch tensor, all
    read without a copy), refilling it before backward changes no gradient."""
    model = Sequential([fastrnn.RNN(3, 4, batch_first=True, dtype="float64", seed=0),
                        Dense(4, 2, dtype="float64", seed=1)])
    x = rng.standard_normal((2, 5, 3))
    held = {"ndarray": lambda a: a, "memoryview": memoryview,
            "torch": lambda a: pytest.importorskip("torch").from_numpy(a)}[wrap](x)
    out, cache = model.forward_train(held)
    dout = rng.standard_normal(out.shape)
    expected = model.backward(model.forward_train(x.copy())[1], dout)
    x[:] = 0
    assert_close(model.backward(cache, dout), expected, "float64", tol=0)
