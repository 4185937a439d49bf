"""fastrnn.from_keras: Keras 3 SimpleRNN / LSTM / GRU / Bidirectional -> fastrnn layers.

Every check runs the real Keras layer (torch backend) as the oracle: outputs with
return_sequences=True and False, final states from return_state=True, masked
sequences against fastrnn's ``lengths=``, the options the converter must refuse, and
the gradient of a converted layer (finite differences and Keras' own autograd).
"""

import os

os.environ["KERAS_BACKEND"] = "torch"

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import fastrnn

if keras.backend.backend() != "torch":          # keras was imported earlier with another backend
    pytest.skip("these tests need Keras with KERAS_BACKEND=torch", allow_module_level=True)

# Keras' torch backend converts tensors with np.array(x) (NumPy 2 deprecation noise)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

B, T, I = 3, 6, 5
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
# Keras float64 layers compute their matmuls in float32 (see test_from_keras_float64):
# comparisons against Keras' float64 results use the float32 tolerance.
KERAS_F64_TOL = 1e-5

KERAS_CLASSES = {"SimpleRNN": "SimpleRNN", "LSTM": "LSTM", "GRU": "GRU"}
FASTRNN_CLASSES = {"SimpleRNN": fastrnn.RNN, "LSTM": fastrnn.LSTM, "GRU": fastrnn.GRU}


# ---------------------------------------------------------------------- helpers

@pytest.fixture
def krng():
    return np.random.default_rng(8675309)


def to_numpy(t):
    return keras.ops.convert_to_numpy(t)


def assert_close(actual, expected, dtype, what, tol=None):
    """|a - e| <= tol * (|e| + max(1, max|e|)), and the dtype must be the layer's."""
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, not {dtype}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


def make_keras(kind, units, *, bidirectional=False, return_sequences=True,
               return_state=False, dtype="float32", **options):
    """A (not yet built) Keras layer of ``kind``, wrapped in Bidirectional if asked."""
    cls = getattr(keras.layers, KERAS_CLASSES[kind])
    inner = cls(units, return_sequences=return_sequences, return_state=return_state,
                dtype=dtype, **options)
    if bidirectional:
        return keras.layers.Bidirectional(inner, dtype=dtype)
    return inner


def randomise(layer, rng):
    """Random kernels and (nonzero, distinct) biases, so every weight matters."""
    weights = []
    for w in layer.get_weights():
        weights.append(rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype))
    layer.set_weights(weights)
    return layer.get_weights()


def built(layer, x):
    layer(x)
    return layer


def fastrnn_states(f_out, kind):
    """fastrnn's final states as a list in Keras' return_state order, per direction."""
    if kind == "LSTM":
        _, (h_n, c_n) = f_out
        return [s for d in range(h_n.shape[0]) for s in (h_n[d], c_n[d])]
    _, h_n = f_out
    return [h_n[d] for d in range(h_n.shape[0])]


# (kind, options) of every configuration tried against Keras
CONFIGS = (
    [pytest.param("SimpleRNN", dict(activation=a, use_bias=b), id=f"simplernn-{a}-bias{int(b)}")
     for a in ("tanh", "relu", "sigmoid") for b in (True, False)]
    + [pytest.param("LSTM", dict(use_bias=b), id=f"lstm-bias{int(b)}") for b in (True, False)]
    + [pytest.param("GRU", dict(reset_after=r, use_bias=b),
                    id=f"gru-reset_after{int(r)}-bias{int(b)}")
       for r in (True, False) for b in (True, False)]
)


# ------------------------------------------------------------ forward parity

@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("kind,options", CONFIGS)
def test_from_keras_matches_keras(krng, kind, options, bidirectional):
    units = 13 if bidirectional else 7
    x = krng.standard_normal((B, T, I)).astype(np.float32)

    seq = built(make_keras(kind, units, bidirectional=bidirectional, return_state=True,
                           **options), x)
    weights = randomise(seq, krng)
    k_out = [to_numpy(o) for o in seq(x)]

    layer = fastrnn.from_keras(seq)
    cls = FASTRNN_CLASSES[kind]
    assert type(layer) is cls
    assert layer.batch_first is True
    assert layer.bidirectional is bidirectional
    assert layer.hidden_size == units and layer.input_size == I
    assert layer.bias is options["use_bias"]
    assert layer.dtype == np.float32
    if kind == "SimpleRNN":
        assert layer.nonlinearity == options["activation"]
    if kind == "GRU":
        assert layer.reset_after is options["reset_after"]

    f_out = layer(x)
    y = f_out[0]
    D = 2 if bidirectional else 1
    assert y.shape == (B, T, D * units)
    assert_close(y, k_out[0], np.float32, "y vs Keras return_sequences=True output")

    # return_state: [y, h] / [y, h, c], Bidirectional [y, h_fw, (c_fw,) h_bw, (c_bw)]
    k_states = k_out[1:]
    f_states = fastrnn_states(f_out, kind)
    assert len(k_states) == len(f_states) == D * (2 if kind == "LSTM" else 1)
    for i, (a, e) in enumerate(zip(f_states, k_states)):
        assert_close(a, e, np.float32, f"final state {i} vs Keras return_state")

    # return_sequences=False: the last step (forward) / the state after the whole
    # sequence (backward direction: y at t = 0)
    last = built(make_keras(kind, units, bidirectional=bidirectional,
                            return_sequences=False, **options), x)
    last.set_weights(weights)
    k_last = to_numpy(last(x))
    if bidirectional:
        expected_last = np.concatenate([y[:, -1, :units], y[:, 0, units:]], axis=-1)
    else:
        expected_last = y[:, -1]
    assert_close(expected_last, k_last, np.float32, "Keras return_sequences=False output")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("kind,options", [
    pytest.param("SimpleRNN", dict(activation="relu"), id="simplernn-relu"),
    pytest.param("LSTM", {}, id="lstm"),
    pytest.param("GRU", dict(reset_after=True), id="gru-reset_after1"),
    pytest.param("GRU", dict(reset_after=False), id="gru-reset_after0"),
])
def test_from_keras_float64(krng, kind, options, bidirectional):
    """A float64 Keras layer gives a float64 fastrnn layer holding Keras' float64 weights
    exactly (no float32 rounding on the way), in torch's gate order, and computing
    what Keras computes.

    Keras 3 computes its float64 matmuls in float32 (its JAX-style type promotion
    maps float64 to float32: keras.src.backend.common.dtypes.result_type("float64",
    "float64") == "float32"), so Keras' float64 outputs are only float32-accurate and
    are compared at the float32 tolerance; the exact check is on the weights.
    """
    units = 7
    x = krng.standard_normal((B, T, I))
    seq = built(make_keras(kind, units, bidirectional=bidirectional, return_state=True,
                           dtype="float64", **options), x)
    randomise(seq, krng)
    layer = fastrnn.from_keras(seq)
    assert layer.dtype == np.float64

    # the weights, exactly: Keras kernels are (in, G*units) with gates
    # SimpleRNN h / LSTM i,f,c,o / GRU z,r,h; torch's are (G*units, in), GRU r,z,n
    order = {"SimpleRNN": [0], "LSTM": [0, 1, 2, 3], "GRU": [1, 0, 2]}[kind]

    def torch_order(a):
        return np.concatenate([a[g * units:(g + 1) * units] for g in order], axis=0)

    directions = [seq.forward_layer, seq.backward_layer] if bidirectional else [seq]
    state = layer.state_dict()
    for d, klayer in enumerate(directions):
        sfx = "_l0" + ("_reverse" if d else "")
        kw = klayer.get_weights()
        assert kw[0].dtype == np.float64
        np.testing.assert_array_equal(state["weight_ih" + sfx], torch_order(kw[0].T))
        np.testing.assert_array_equal(state["weight_hh" + sfx], torch_order(kw[1].T))
        if kind == "GRU" and options["reset_after"]:
            b_ih, b_hh = kw[2][0], kw[2][1]
        else:
            b_ih, b_hh = kw[2], np.zeros_like(kw[2])
        np.testing.assert_array_equal(state["bias_ih" + sfx], torch_order(b_ih))
        np.testing.assert_array_equal(state["bias_hh" + sfx], torch_order(b_hh))

    k_out = [to_numpy(o) for o in seq(x)]
    f_out = layer(x)
    assert_close(f_out[0], k_out[0], np.float64, "y (float64)", tol=KERAS_F64_TOL)
    for i, (a, e) in enumerate(zip(fastrnn_states(f_out, kind), k_out[1:])):
        assert_close(a, e, np.float64, f"final state {i} (float64)", tol=KERAS_F64_TOL)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("kind,options", [
    pytest.param("SimpleRNN", dict(activation="tanh"), id="simplernn"),
    pytest.param("LSTM", {}, id="lstm"),
    pytest.param("GRU", dict(reset_after=True), id="gru-reset_after1"),
    pytest.param("GRU", dict(reset_after=False), id="gru-reset_after0"),
])
def test_from_keras_mask_matches_lengths(krng, kind, options, bidirectional):
    """A Keras mask of right-padded sequences is fastrnn's ``lengths=``: equal outputs at
    the real steps and equal final states (Keras carries the previous output over padded
    steps of a unidirectional layer, fastrnn writes 0 there as torch does)."""
    x = krng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([T, 1, 4], np.int64)
    mask = np.arange(T)[None, :] < lengths[:, None]
    seq = built(make_keras(kind, 7, bidirectional=bidirectional, return_state=True,
                           **options), x)
    randomise(seq, krng)
    k_out = [to_numpy(o) for o in seq(x, mask=mask)]
    layer = fastrnn.from_keras(seq)
    f_out = layer(x, lengths=lengths)
    y = f_out[0]
    assert_close(y[mask], k_out[0][mask], np.float32, "y at real steps vs masked Keras")
    np.testing.assert_array_equal(y[~mask], 0)
    for i, (a, e) in enumerate(zip(fastrnn_states(f_out, kind), k_out[1:])):
        assert_close(a, e, np.float32, f"final state {i} vs masked Keras")


# ------------------------------------------------------------------ refusals

def _built(layer, batch=B):
    layer(np.zeros((batch, T, I), np.float32))
    return layer


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_go_backwards_refused(kind):
    layer = _built(make_keras(kind, 7, go_backwards=True))
    with pytest.raises(NotImplementedError, match="go_backwards"):
        fastrnn.from_keras(layer)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_stateful_refused(kind):
    layer = _built(make_keras(kind, 7, stateful=True))
    with pytest.raises(NotImplementedError, match="stateful"):
        fastrnn.from_keras(layer)


@pytest.mark.parametrize("kind,options,pattern", [
    pytest.param("SimpleRNN", dict(activation="elu"), r"activation.*elu", id="simplernn-elu"),
    pytest.param("SimpleRNN", dict(activation="linear"), r"activation.*linear",
                 id="simplernn-linear"),
    pytest.param("LSTM", dict(activation="relu"), r"activation.*relu", id="lstm-relu"),
    pytest.param("GRU", dict(activation="relu"), r"activation.*relu", id="gru-relu"),
    pytest.param("LSTM", dict(recurrent_activation="hard_sigmoid"),
                 r"recurrent_activation.*hard_sigmoid", id="lstm-hard_sigmoid"),
    pytest.param("GRU", dict(recurrent_activation="hard_sigmoid"),
                 r"recurrent_activation.*hard_sigmoid", id="gru-hard_sigmoid"),
])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
def test_activation_refused(kind, options, pattern, bidirectional):
    layer = _built(make_keras(kind, 7, bidirectional=bidirectional, **options))
    with pytest.raises(NotImplementedError, match=pattern):
        fastrnn.from_keras(layer)


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave", None])
def test_bidirectional_merge_mode_refused(merge_mode):
    layer = _built(keras.layers.Bidirectional(keras.layers.GRU(7, return_sequences=True),
                                              merge_mode=merge_mode))
    with pytest.raises(NotImplementedError, match="merge_mode"):
        fastrnn.from_keras(layer)


@pytest.mark.parametrize("kind,options", [
    pytest.param("SimpleRNN", dict(activation="relu"), id="simplernn-relu"),
    pytest.param("LSTM", {}, id="lstm"),
    pytest.param("GRU", dict(reset_after=False), id="gru-reset_after0"),
])
def test_bidirectional_explicit_backward_layer(krng, kind, options):
    """Bidirectional with an explicit, identically configured backward_layer (its own
    weights) converts and matches Keras."""
    x = krng.standard_normal((B, T, I)).astype(np.float32)
    cls = getattr(keras.layers, kind)
    layer = built(keras.layers.Bidirectional(
        cls(7, return_sequences=True, return_state=True, **options),
        backward_layer=cls(7, go_backwards=True, return_sequences=True, return_state=True,
                           **options)), x)
    randomise(layer, krng)
    k_out = [to_numpy(o) for o in layer(x)]
    f_out = fastrnn.from_keras(layer)(x)
    assert_close(f_out[0], k_out[0], np.float32, "y")
    for i, (a, e) in enumerate(zip(fastrnn_states(f_out, kind), k_out[1:])):
        assert_close(a, e, np.float32, f"final state {i}")


@pytest.mark.parametrize("kind,forward,backward,pattern", [
    pytest.param("SimpleRNN", dict(activation="tanh"), dict(activation="relu"), "activation",
                 id="simplernn-tanh-relu"),
    pytest.param("LSTM", {}, dict(recurrent_activation="hard_sigmoid"), "recurrent_activation",
                 id="lstm-sigmoid-hard_sigmoid"),
    pytest.param("GRU", dict(reset_after=True), dict(reset_after=False), "reset_after",
                 id="gru-reset_after"),
    pytest.param("LSTM", dict(use_bias=True), dict(use_bias=False), "use_bias",
                 id="lstm-use_bias"),
])
def test_bidirectional_backward_layer_with_other_config_refused(kind, forward, backward,
                                                                pattern):
    """An explicit backward_layer configured differently from the forward layer
    cannot be one fastrnn layer (both directions share one cell configuration), so
    the converter must refuse it, naming the option, rather than apply the forward
    layer's configuration to the backward weights."""
    cls = getattr(keras.layers, kind)
    layer = _built(keras.layers.Bidirectional(
        cls(7, return_sequences=True, **forward),
        backward_layer=cls(7, go_backwards=True, return_sequences=True, **backward)))
    with pytest.raises(NotImplementedError, match=pattern):
        fastrnn.from_keras(layer)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_unbuilt_layer_refused(kind, bidirectional):
    layer = make_keras(kind, 7, bidirectional=bidirectional)
    with pytest.raises(ValueError, match="build"):
        fastrnn.from_keras(layer)


# ------------------------------------------------------------------ training

def test_converted_gru_reset_before_trains_like_keras(krng):
    """A layer converted from Keras GRU(reset_after=False) in float64 is trainable:
    backward's dx matches central finite differences of the layer itself, and dx and
    the weight gradients match Keras' own autograd (torch backend)."""
    units = 7
    x = krng.standard_normal((B, T, I))
    klayer = built(make_keras("GRU", units, return_state=True, reset_after=False,
                              dtype="float64"), x)
    randomise(klayer, krng)
    layer = fastrnn.from_keras(klayer)
    assert layer.dtype == np.float64 and layer.reset_after is False

    y, h_n, cache = layer.forward_train(x)
    k_y, k_h = klayer(x)
    assert_close(y, to_numpy(k_y), np.float64, "forward_train y vs Keras", tol=KERAS_F64_TOL)
    assert_close(h_n[0], to_numpy(k_h), np.float64, "forward_train h_n vs Keras",
                 tol=KERAS_F64_TOL)

    dy = krng.standard_normal(y.shape)
    dh = krng.standard_normal(h_n.shape)
    dx, dhx, grads = layer.backward(cache, dy, dh)
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert dhx.shape == h_n.shape
    assert set(grads) == set(layer.state_dict())

    # finite differences of L(x) = <y, dy> + <h_n, dh> through the fastrnn layer
    def loss(xx):
        yy, hh = layer(xx)
        return float(np.sum(yy * dy) + np.sum(hh * dh))

    eps = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd[idx] = (loss(xp) - loss(xm)) / (2 * eps)
    assert_close(dx, fd, np.float64, "dx vs finite differences", tol=1e-6)

    # Keras' autograd through the same weights
    xt = torch.tensor(x, requires_grad=True)
    k_y, k_h = klayer(xt)
    k_loss = (k_y * torch.from_numpy(dy)).sum() + (k_h * torch.from_numpy(dh[0])).sum()
    kernel, recurrent, bias = (w.value for w in klayer.trainable_weights)
    g = torch.autograd.grad(k_loss, [xt, kernel, recurrent, bias])
    g = [t.detach().numpy() for t in g]
    assert_close(dx, g[0], np.float64, "dx vs Keras autograd", tol=KERAS_F64_TOL)

    def torch_order(a):          # Keras gate blocks z, r, h -> torch r, z, n
        return np.concatenate([a[units:2 * units], a[:units], a[2 * units:]], axis=0)

    assert_close(grads["weight_ih_l0"], torch_order(g[1].T), np.float64,
                 "weight_ih grad vs Keras kernel grad", tol=KERAS_F64_TOL)
    assert_close(grads["weight_hh_l0"], torch_order(g[2].T), np.float64,
                 "weight_hh grad vs Keras recurrent_kernel grad", tol=KERAS_F64_TOL)
    assert_close(grads["bias_ih_l0"], torch_order(g[3]), np.float64,
                 "bias_ih grad vs Keras bias grad", tol=KERAS_F64_TOL)
