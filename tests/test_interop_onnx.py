"""fastrnn.from_onnx / fastrnn.interop.to_onnx against onnxruntime, and the torch round trip.

The ONNX graphs are built by hand with onnx.helper (random W, R, B initializers) and
run with onnxruntime's CPU provider, which is the oracle.  onnxruntime runs these ops
in float32 and with layout=0 only; a layout=1 node is checked against the layout=0
twin of the same weights run on the transposed input (ONNX defines layout=1 as exactly
that transposition), after checking the layout=1 model is valid ONNX.
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

import fastrnn
from fastrnn.interop import to_onnx

T, B, I, H = 6, 4, 5, 7
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
OPSET = 14
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
DIRECTIONS = ("forward", "reverse", "bidirectional")


# ---------------------------------------------------------------------- helpers

@pytest.fixture
def orng():
    return np.random.default_rng(4242)


def assert_close(actual, expected, dtype, what, tol=None):
    """|a - e| <= tol * (|e| + max(1, max|e|)), and the dtype must be the layer's."""
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, not {dtype}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


def num_dirs(direction):
    return 2 if direction == "bidirectional" else 1


def random_weights(rng, op, D, hidden=H, inputs=I, bias=True, dtype=np.float32):
    """ONNX-layout W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) or None."""
    G = GATES[op]
    W = rng.uniform(-0.6, 0.6, (D, G * hidden, inputs)).astype(dtype)
    R = rng.uniform(-0.6, 0.6, (D, G * hidden, hidden)).astype(dtype)
    Bv = rng.uniform(-0.6, 0.6, (D, 2 * G * hidden)).astype(dtype) if bias else None
    return W, R, Bv


def rnn_node_parts(op, W, R, Bv=None, *, attrs=None, layout=0, seq_lens=False,
                   initial_h=None, initial_c=None, P=None, name="rnn", prefix="",
                   x_name="X", elem=TensorProto.FLOAT):
    """(node, initializers, extra graph inputs, graph outputs) of one RNN/LSTM/GRU node.

    ``initial_h`` / ``initial_c``: None (absent), "input" (a graph input fed at run
    time) or an array (an initializer).  ``P`` (LSTM peepholes) is an initializer."""
    D, GH, _ = W.shape
    hidden = R.shape[-1]
    inits = [numpy_helper.from_array(W, prefix + "W"), numpy_helper.from_array(R, prefix + "R")]
    inputs = [x_name, prefix + "W", prefix + "R", ""]
    graph_inputs = []
    if Bv is not None:
        inits.append(numpy_helper.from_array(Bv, prefix + "B"))
        inputs[3] = prefix + "B"
    inputs.append("sequence_lens" if seq_lens else "")
    if seq_lens:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                          ["batch"]))
    state_shape = ["batch", D, hidden] if layout else [D, "batch", hidden]
    for sname, value in (("initial_h", initial_h), ("initial_c", initial_c)):
        if value is None:
            inputs.append("")
        elif isinstance(value, str):
            inputs.append(prefix + sname)
            graph_inputs.append(helper.make_tensor_value_info(prefix + sname, elem, state_shape))
        else:
            inputs.append(prefix + sname)
            inits.append(numpy_helper.from_array(value, prefix + sname))
    if P is not None:
        inputs.append(prefix + "P")
        inits.append(numpy_helper.from_array(P, prefix + "P"))
    while inputs[-1] == "":
        inputs.pop()
    out_names = [prefix + "Y", prefix + "Y_h"] + ([prefix + "Y_c"] if op == "LSTM" else [])
    y_shape = ["batch", "time", D, hidden] if layout else ["time", D, "batch", hidden]
    outputs = [helper.make_tensor_value_info(out_names[0], elem, y_shape)] + [
        helper.make_tensor_value_info(n, elem, state_shape) for n in out_names[1:]]
    node_attrs = dict(hidden_size=hidden, **(attrs or {}))
    if layout:
        node_attrs["layout"] = layout
    node = helper.make_node(op, inputs, out_names, name=name, **node_attrs)
    return node, inits, graph_inputs, outputs


def make_model(op, W, R, Bv=None, *, layout=0, **kw):
    elem = TensorProto.FLOAT if W.dtype == np.float32 else TensorProto.DOUBLE
    node, inits, graph_inputs, outputs = rnn_node_parts(op, W, R, Bv, layout=layout,
                                                        elem=elem, **kw)
    x_shape = ["batch", "time", W.shape[2]] if layout else ["time", "batch", W.shape[2]]
    x = helper.make_tensor_value_info("X", elem, x_shape)
    graph = helper.make_graph([node], "rnn_graph", [x] + graph_inputs, outputs, inits)
    return finish(graph)


def finish(graph):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model


def run_ort(model, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# cell name -> (ONNX op, node attributes given D, fastrnn class, expected fastrnn options)
CELLS = {
    "rnn_tanh": ("RNN", lambda D: {}, fastrnn.RNN, dict(nonlinearity="tanh")),
    "rnn_relu": ("RNN", lambda D: {"activations": ["Relu"] * D}, fastrnn.RNN,
                 dict(nonlinearity="relu")),
    "rnn_sigmoid": ("RNN", lambda D: {"activations": ["Sigmoid"] * D}, fastrnn.RNN,
                    dict(nonlinearity="sigmoid")),
    "lstm": ("LSTM", lambda D: {}, fastrnn.LSTM, {}),
    "gru_lbr0": ("GRU", lambda D: {"linear_before_reset": 0}, fastrnn.GRU,
                 dict(reset_after=False)),
    "gru_lbr1": ("GRU", lambda D: {"linear_before_reset": 1}, fastrnn.GRU,
                 dict(reset_after=True)),
}

# variant -> (bias, layout, sequence_lens, initial states fed at run time)
VARIANTS = {
    "plain": (True, 0, False, False),
    "no_bias": (False, 0, False, False),
    "layout1": (True, 1, False, False),
    "seq_lens": (True, 0, True, False),
    "initial_state": (True, 0, False, True),
    "layout1_seq_lens_initial": (True, 1, True, True),
}


def onnx_expected(oracle, x, layout, lengths=None, h0=None, c0=None):
    """onnxruntime's (Y, Y_h[, Y_c]) in the layout ``layout``, from ``oracle``, the
    layout=0 model with the node's weights and attributes.  For layout=1 it runs on
    the transposed inputs and its outputs are transposed back."""
    if layout:
        x = x.transpose(1, 0, 2)
        h0 = None if h0 is None else h0.transpose(1, 0, 2)
        c0 = None if c0 is None else c0.transpose(1, 0, 2)
    feeds = {"X": x}
    if lengths is not None:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    if h0 is not None:
        feeds["initial_h"] = h0
    if c0 is not None:
        feeds["initial_c"] = c0
    out = run_ort(oracle, feeds)
    if layout:
        out = [out[0].transpose(2, 0, 1, 3)] + [o.transpose(1, 0, 2) for o in out[1:]]
    return out


def fastrnn_outputs(layer, x, hx=None, lengths=None):
    """(y, h_n, c_n or None)."""
    y, state = layer(x, hx=hx, lengths=lengths)
    if isinstance(state, tuple):
        return y, state[0], state[1]
    return y, state, None


def y_from_onnx(Y, layout):
    """ONNX Y (T, D, B, H) -> (T, B, D*H); layout=1 Y (B, T, D, H) -> (B, T, D*H)."""
    if layout:
        b, t, d, h = Y.shape
        return Y.reshape(b, t, d * h)
    t, d, b, h = Y.shape
    return Y.transpose(0, 2, 1, 3).reshape(t, b, d * h)


def state_from_onnx(S, layout):
    """ONNX Y_h / Y_c (D, B, H), layout=1 (B, D, H) -> fastrnn's (D, B, H)."""
    return S.transpose(1, 0, 2) if layout else S


def lengths_for(rng):
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.permutation(B)[:2]] = (1, T)
    return lengths.astype(np.int64)


# --------------------------------------------------- from_onnx vs onnxruntime

@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_from_onnx_matches_onnxruntime(orng, cell, direction, variant):
    op, attrs_for, cls, options = CELLS[cell]
    bias, layout, use_lengths, use_initial = VARIANTS[variant]
    D = num_dirs(direction)
    W, R, Bv = random_weights(orng, op, D, bias=bias)
    attrs = dict(attrs_for(D), direction=direction)

    def build(layout):
        return make_model(op, W, R, Bv, attrs=attrs, layout=layout, seq_lens=use_lengths,
                          initial_h="input" if use_initial else None,
                          initial_c="input" if use_initial and op == "LSTM" else None)

    model = build(layout)

    x_shape = (B, T, I) if layout else (T, B, I)
    x = orng.standard_normal(x_shape).astype(np.float32)
    lengths = lengths_for(orng) if use_lengths else None
    state_shape = (B, D, H) if layout else (D, B, H)
    h0 = (orng.standard_normal(state_shape) * 0.5).astype(np.float32) if use_initial else None
    c0 = (orng.standard_normal(state_shape) * 0.5).astype(np.float32) \
        if use_initial and op == "LSTM" else None
    Y, Y_h, *rest = onnx_expected(build(0), x, layout, lengths, h0, c0)

    layer = fastrnn.from_onnx(model)
    assert type(layer) is cls
    assert (layer.input_size, layer.hidden_size, layer.num_layers) == (I, H, 1)
    assert layer.bidirectional is (D == 2)
    assert layer.reverse is (direction == "reverse")
    assert layer.batch_first is bool(layout)
    assert layer.bias is bias
    assert layer.dtype == np.float32
    for key, value in options.items():
        assert getattr(layer, key) == value, key

    hx = None
    if use_initial:
        h = state_from_onnx(h0, layout)
        hx = (h, state_from_onnx(c0, layout)) if op == "LSTM" else h
    y, h_n, c_n = fastrnn_outputs(layer, x, hx, lengths)
    assert_close(y, y_from_onnx(Y, layout), np.float32, "y vs ONNX Y")
    assert_close(h_n, state_from_onnx(Y_h, layout), np.float32, "h_n vs ONNX Y_h")
    if op == "LSTM":
        assert_close(c_n, state_from_onnx(rest[0], layout), np.float32, "c_n vs ONNX Y_c")
    if lengths is not None:
        steps = np.arange(T)
        padded = steps[:, None] >= lengths[None, :]            # (T, B)
        y_tb = y.transpose(1, 0, 2) if layout else y
        np.testing.assert_array_equal(y_tb[padded], 0)


def test_from_onnx_layout1_model_is_checked_valid(orng):
    """The layout=1 models above are valid ONNX (the checker accepts them), so the
    twin-model oracle is comparing against a legitimate graph."""
    W, R, Bv = random_weights(orng, "LSTM", 2)
    model = make_model("LSTM", W, R, Bv, attrs=dict(direction="bidirectional"), layout=1)
    onnx.checker.check_model(model, full_check=True)
    assert fastrnn.from_onnx(model).batch_first is True


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("case", ["lstm_defaults", "gru_defaults", "rnn_tanh_explicit",
                                  "lstm_zero_peepholes", "lstm_input_forget_0"])
def test_from_onnx_accepts_explicit_defaults(orng, case, direction):
    """Attributes spelled out at their default values (and all-zero peepholes)
    change nothing and must convert."""
    D = num_dirs(direction)
    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[case.split("_")[0]]
    attrs = dict(direction=direction)
    P = None
    if case == "lstm_defaults":
        attrs["activations"] = ["Sigmoid", "Tanh", "Tanh"] * D
    elif case == "gru_defaults":
        attrs["activations"] = ["Sigmoid", "Tanh"] * D
    elif case == "rnn_tanh_explicit":
        attrs["activations"] = ["Tanh"] * D
    elif case == "lstm_zero_peepholes":
        P = np.zeros((D, 3 * H), np.float32)
    else:
        attrs["input_forget"] = 0
    W, R, Bv = random_weights(orng, op, D)
    model = make_model(op, W, R, Bv, attrs=attrs, P=P)
    x = orng.standard_normal((T, B, I)).astype(np.float32)
    Y, Y_h, *rest = run_ort(model, {"X": x})
    y, h_n, c_n = fastrnn_outputs(fastrnn.from_onnx(model), x)
    assert_close(y, y_from_onnx(Y, 0), np.float32, "y")
    assert_close(h_n, Y_h, np.float32, "h_n")
    if op == "LSTM":
        assert_close(c_n, rest[0], np.float32, "c_n")


def test_from_onnx_weights_from_constant_nodes(orng):
    """W, R and B given by Constant nodes instead of initializers."""
    W, R, Bv = random_weights(orng, "GRU", 2)
    node, _, _, outputs = rnn_node_parts("GRU", W, R, Bv, attrs=dict(
        direction="bidirectional", linear_before_reset=1))
    consts = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(a, n + "_v"))
              for n, a in (("W", W), ("R", R), ("B", Bv))]
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", I])
    model = finish(helper.make_graph(consts + [node], "g", [x_info], outputs))
    x = orng.standard_normal((T, B, I)).astype(np.float32)
    Y, Y_h = run_ort(model, {"X": x})
    y, h_n, _ = fastrnn_outputs(fastrnn.from_onnx(model), x)
    assert_close(y, y_from_onnx(Y, 0), np.float32, "y")
    assert_close(h_n, Y_h, np.float32, "h_n")


def test_from_onnx_float64_model(orng):
    """A DOUBLE model gives a float64 layer holding the same weights (onnxruntime has
    no float64 RNN kernels: the weights are float32 values, the float32 model is run)."""
    W, R, Bv = random_weights(orng, "LSTM", 2)
    attrs = dict(direction="bidirectional")
    m32 = make_model("LSTM", W, R, Bv, attrs=attrs)
    m64 = make_model("LSTM", W.astype(np.float64), R.astype(np.float64),
                     Bv.astype(np.float64), attrs=attrs)
    l32, l64 = fastrnn.from_onnx(m32), fastrnn.from_onnx(m64)
    assert l64.dtype == np.float64
    s32, s64 = l32.state_dict(), l64.state_dict()
    assert list(s32) == list(s64)
    for k in s32:
        assert s64[k].dtype == np.float64
        np.testing.assert_array_equal(s64[k], s32[k].astype(np.float64), err_msg=k)
    x = orng.standard_normal((T, B, I)).astype(np.float32)
    Y, Y_h, Y_c = run_ort(m32, {"X": x})
    y, h_n, c_n = fastrnn_outputs(l64, x.astype(np.float64))
    # the oracle is float32: float32 tolerance
    assert_close(y, y_from_onnx(Y, 0).astype(np.float64), np.float64, "y", tol=1e-5)
    assert_close(h_n, Y_h.astype(np.float64), np.float64, "h_n", tol=1e-5)
    assert_close(c_n, Y_c.astype(np.float64), np.float64, "c_n", tol=1e-5)


def test_from_onnx_path(orng, tmp_path):
    W, R, Bv = random_weights(orng, "LSTM", 1)
    model = make_model("LSTM", W, R, Bv, attrs=dict(direction="reverse"))
    path = tmp_path / "lstm.onnx"
    onnx.save(model, str(path))
    x = orng.standard_normal((T, B, I)).astype(np.float32)
    Y, Y_h, Y_c = run_ort(model, {"X": x})
    expected = fastrnn.from_onnx(model).state_dict()
    for source in (str(path), path):
        layer = fastrnn.from_onnx(source)
        assert layer.reverse is True
        got = layer.state_dict()
        assert list(got) == list(expected)
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
        y, h_n, c_n = fastrnn_outputs(layer, x)
        assert_close(y, y_from_onnx(Y, 0), np.float32, f"y from {source!r}")
        assert_close(h_n, Y_h, np.float32, "h_n")
        assert_close(c_n, Y_c, np.float32, "c_n")


# ------------------------------------------------------------ node selection

def two_node_model(rng):
    """X -> LSTM 'encoder' (H) and X -> GRU 'decoder' (H2) side by side, plus a Relu."""
    H2 = 5
    W1, R1, B1 = random_weights(rng, "LSTM", 1)
    W2, R2, B2 = random_weights(rng, "GRU", 2, hidden=H2)
    n1, i1, _, o1 = rnn_node_parts("LSTM", W1, R1, B1, name="encoder", prefix="enc_")
    n2, i2, _, o2 = rnn_node_parts("GRU", W2, R2, B2, name="decoder", prefix="dec_",
                                   attrs=dict(direction="bidirectional",
                                              linear_before_reset=0))
    relu = helper.make_node("Relu", ["X"], ["X_relu"], name="not_an_rnn")
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", I])
    relu_out = helper.make_tensor_value_info("X_relu", TensorProto.FLOAT,
                                             ["time", "batch", I])
    graph = helper.make_graph([relu, n1, n2], "two", [x_info], o1 + o2 + [relu_out], i1 + i2)
    return finish(graph)


def test_from_onnx_node_selection(orng):
    model = two_node_model(orng)
    x = orng.standard_normal((T, B, I)).astype(np.float32)
    Y1, Y1_h, Y1_c, Y2, Y2_h, _ = run_ort(model, {"X": x})

    enc = fastrnn.from_onnx(model, node="encoder")
    assert type(enc) is fastrnn.LSTM and enc.hidden_size == H and not enc.bidirectional
    y, h_n, c_n = fastrnn_outputs(enc, x)
    assert_close(y, y_from_onnx(Y1, 0), np.float32, "encoder y")
    assert_close(h_n, Y1_h, np.float32, "encoder h_n")
    assert_close(c_n, Y1_c, np.float32, "encoder c_n")

    dec = fastrnn.from_onnx(model, node="decoder")
    assert type(dec) is fastrnn.GRU and dec.hidden_size == 5 and dec.bidirectional
    assert dec.reset_after is False
    y, h_n, _ = fastrnn_outputs(dec, x)
    assert_close(y, y_from_onnx(Y2, 0), np.float32, "decoder y")
    assert_close(h_n, Y2_h, np.float32, "decoder h_n")


def test_from_onnx_ambiguous_without_node(orng):
    with pytest.raises(ValueError, match="node"):
        fastrnn.from_onnx(two_node_model(orng))


@pytest.mark.parametrize("name", ["missing", "not_an_rnn", "Encoder"])
def test_from_onnx_unknown_node_name(orng, name):
    with pytest.raises(ValueError, match=name):
        fastrnn.from_onnx(two_node_model(orng), node=name)


def test_from_onnx_graph_without_rnn_node():
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n"])
    y_info = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n"])
    model = finish(helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                                     [x_info], [y_info]))
    with pytest.raises(ValueError):
        fastrnn.from_onnx(model)


# ------------------------------------------------------------------ refusals

UNSUPPORTED = [
    pytest.param("LSTM", dict(clip=3.0), None, "clip", id="lstm-clip"),
    pytest.param("GRU", dict(clip=0.5), None, "clip", id="gru-clip"),
    pytest.param("RNN", dict(clip=1.0), None, "clip", id="rnn-clip"),
    pytest.param("LSTM", dict(input_forget=1), None, "input_forget", id="lstm-input_forget"),
    pytest.param("RNN", dict(activations=["LeakyRelu"], activation_alpha=[0.1]), None,
                 "activation", id="rnn-leakyrelu-alpha"),
    pytest.param("GRU", dict(activations=["HardSigmoid", "Tanh"], activation_alpha=[0.3],
                             activation_beta=[0.4]), None, "activation",
                 id="gru-hardsigmoid-alpha-beta"),
    pytest.param("GRU", dict(activations=["Sigmoid", "Tanh"], activation_alpha=[1.0, 1.0]),
                 None, "activation_alpha", id="gru-activation_alpha"),
    pytest.param("LSTM", dict(activations=["Sigmoid", "Tanh", "Relu"]), None, "activations",
                 id="lstm-activations"),
    pytest.param("LSTM", dict(activations=["HardSigmoid", "Tanh", "Tanh"]), None,
                 "activations", id="lstm-hardsigmoid"),
    pytest.param("GRU", dict(activations=["Sigmoid", "Relu"]), None, "activations",
                 id="gru-activations"),
    pytest.param("RNN", dict(activations=["Softsign"]), None, "activations",
                 id="rnn-softsign"),
    pytest.param("RNN", dict(activations=["Tanh", "Relu"], direction="bidirectional"), None,
                 "activations", id="rnn-mixed-bidirectional"),
    pytest.param("LSTM", {}, "nonzero", r"\bP\b|peephole", id="lstm-peepholes"),
]


@pytest.mark.parametrize("op,attrs,peepholes,pattern", UNSUPPORTED)
def test_from_onnx_unsupported_attribute(orng, op, attrs, peepholes, pattern):
    D = num_dirs(attrs.get("direction", "forward"))
    W, R, Bv = random_weights(orng, op, D)
    P = None
    if peepholes:
        P = np.zeros((D, 3 * H), np.float32)
        P[0, 4] = 0.25
    model = make_model(op, W, R, Bv, attrs=attrs, P=P)
    with pytest.raises(NotImplementedError, match=pattern):
        fastrnn.from_onnx(model)


def test_from_onnx_weights_computed_at_run_time(orng):
    """W fed as a graph input cannot be read: NotImplementedError naming W."""
    W, R, Bv = random_weights(orng, "RNN", 1)
    node, inits, _, outputs = rnn_node_parts("RNN", W, R, Bv)
    inits = [t for t in inits if t.name != "W"]
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", "batch", I])
    w_info = helper.make_tensor_value_info("W", TensorProto.FLOAT, list(W.shape))
    model = finish(helper.make_graph([node], "g", [x_info, w_info], outputs, inits))
    with pytest.raises(NotImplementedError, match=r"\bW\b"):
        fastrnn.from_onnx(model)


@pytest.mark.parametrize("op", ["RNN", "LSTM", "GRU"])
def test_from_onnx_constant_initial_state(orng, op):
    """An initial_h (initial_c) held in the graph as an initializer: all zeros is the
    layer's default state and converts; nonzero values are a state the layer cannot
    hold, so converting must refuse rather than silently start from zeros."""
    D = 2
    W, R, Bv = random_weights(orng, op, D)
    attrs = dict(direction="bidirectional")
    zeros = np.zeros((D, 1, H), np.float32)          # batch size 1 baked into the graph
    model = make_model(op, W, R, Bv, attrs=attrs, initial_h=zeros,
                       initial_c=zeros if op == "LSTM" else None)
    x = orng.standard_normal((T, 1, I)).astype(np.float32)
    Y, Y_h, *_ = run_ort(model, {"X": x})
    y, h_n, _ = fastrnn_outputs(fastrnn.from_onnx(model), x)
    assert_close(y, y_from_onnx(Y, 0), np.float32, "y with a zero initial_h initializer")
    assert_close(h_n, Y_h, np.float32, "h_n")

    nonzero = (orng.standard_normal((D, 1, H)) * 0.5).astype(np.float32)
    model = make_model(op, W, R, Bv, attrs=attrs, initial_h=nonzero,
                       initial_c=zeros if op == "LSTM" else None)
    with pytest.raises(NotImplementedError, match="initial_h"):
        fastrnn.from_onnx(model)


@pytest.mark.parametrize("fill, source", [(0.0, "constant"), (0.7, "constant"),
                                          (0.0, "constant_of_shape"), (0.7, "constant_of_shape"),
                                          (None, "computed")])
def test_from_onnx_initial_state_built_in_the_graph(orng, fill, source):
    """A state Expand-ed over the batch from a value in the graph (as torch's exporter
    writes a zero or a learned h0): zeros convert; anything else must refuse, never
    convert into a layer that silently starts from zeros."""
    W, R, Bv = random_weights(orng, "GRU", 1)
    node, inits, _, outputs = rnn_node_parts("GRU", W, R, Bv, initial_h=np.zeros((1, 1, H),
                                                                                np.float32))
    inits = [t for t in inits if t.name != "initial_h"]
    shape = helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(
        np.array([1, B, H], np.int64)))
    if source == "constant":
        seed = [helper.make_node("Constant", [], ["seed"], value=numpy_helper.from_array(
            np.full((1, 1, H), fill, np.float32)))]
    elif source == "constant_of_shape":
        seed = [helper.make_node("ConstantOfShape", ["shape"], ["seed"],
                                 value=numpy_helper.from_array(np.array([fill], np.float32)))]
    else:                                       # a value the converter cannot fold
        seed = [helper.make_node("RandomNormal", [], ["seed"], shape=[1, 1, H])]
    expand = helper.make_node("Expand", ["seed", "shape"], ["initial_h"])
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", B, I])
    model = finish(helper.make_graph([shape] + seed + [expand, node], "g", [x_info],
                                     outputs, inits))
    if fill == 0.0:
        x = orng.standard_normal((T, B, I)).astype(np.float32)
        Y, *_ = run_ort(model, {"X": x})
        assert_close(fastrnn_outputs(fastrnn.from_onnx(model), x)[0], y_from_onnx(Y, 0),
                     np.float32, "y from a zero state built in the graph")
    else:
        with pytest.raises(NotImplementedError, match="initial_h"):
            fastrnn.from_onnx(model)


def test_from_onnx_constant_sequence_lens_refused(orng):
    """sequence_lens baked into the graph is not a property of a layer (fastrnn takes
    lengths= at call time): converting must refuse rather than ignore it."""
    W, R, Bv = random_weights(orng, "GRU", 1)
    node, inits, _, outputs = rnn_node_parts("GRU", W, R, Bv, seq_lens=True)
    inits.append(numpy_helper.from_array(np.array([T, 2, 3, 1], np.int32), "sequence_lens"))
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["time", B, I])
    model = finish(helper.make_graph([node], "g", [x_info], outputs, inits))
    with pytest.raises(NotImplementedError, match="sequence_lens"):
        fastrnn.from_onnx(model)


# ------------------------------------------------------ to_onnx round trip

TO_ONNX_CELLS = {
    "rnn_tanh": (fastrnn.RNN, dict(nonlinearity="tanh")),
    "rnn_relu": (fastrnn.RNN, dict(nonlinearity="relu")),
    "rnn_sigmoid": (fastrnn.RNN, dict(nonlinearity="sigmoid")),
    "lstm": (fastrnn.LSTM, {}),
    "gru": (fastrnn.GRU, dict(reset_after=True)),
    "gru_reset_before": (fastrnn.GRU, dict(reset_after=False)),
}
TO_ONNX_CONFIGS = {
    "forward": dict(),
    "reverse": dict(reverse=True),
    "bidirectional": dict(bidirectional=True),
    "no_bias": dict(bias=False, bidirectional=True),
    "layers2": dict(num_layers=2),
    "bidirectional_layers2": dict(num_layers=2, bidirectional=True),
}


def randomise_biases(layer, rng):
    """Distinct, larger biases (b_ih and b_hh differ), so their placement matters."""
    for name, p in layer.params.items():
        if name.startswith("bias"):
            p[...] = rng.uniform(-0.8, 0.8, p.shape)
    return layer


@pytest.mark.parametrize("config", list(TO_ONNX_CONFIGS))
@pytest.mark.parametrize("cell", list(TO_ONNX_CELLS))
def test_to_onnx_matches_layer(orng, cell, config):
    cls, options = TO_ONNX_CELLS[cell]
    layer = randomise_biases(cls(I, H, seed=3, **options, **TO_ONNX_CONFIGS[config]), orng)
    model = to_onnx(layer)
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["y"]
    x = orng.standard_normal((T, B, I)).astype(np.float32)
    (Y,) = run_ort(model, {"x": x})
    D = layer.num_directions
    assert Y.shape == (T, D, B, H)
    y, _ = layer(x)
    assert_close(y, y_from_onnx(Y, 0), np.float32, "layer y vs onnxruntime(to_onnx(layer))")

    if layer.num_layers == 1:
        # and back: from_onnx(to_onnx(layer)) is the same layer
        back = fastrnn.from_onnx(model)
        assert type(back) is cls
        assert back.reverse is layer.reverse and back.bidirectional is layer.bidirectional
        assert back.bias is layer.bias
        for key, value in options.items():
            assert getattr(back, key) == value, key
        s, sb = layer.state_dict(), back.state_dict()
        assert list(sb) == list(s)
        for k in s:
            np.testing.assert_array_equal(sb[k], s[k], err_msg=k)
        yb, _ = back(x)
        np.testing.assert_array_equal(yb, y)


@pytest.mark.parametrize("kwargs,pattern", [
    pytest.param(dict(cls=fastrnn.LSTM, proj_size=3, backend="reference"), "proj_size",
                 id="proj_size"),
    pytest.param(dict(cls=fastrnn.GRU, batch_first=True), "batch_first", id="batch_first"),
])
def test_to_onnx_refuses(kwargs, pattern):
    kwargs = dict(kwargs)
    cls = kwargs.pop("cls")
    with pytest.raises(NotImplementedError, match=pattern):
        to_onnx(cls(I, H, **kwargs))


# --------------------------------------------------------- torch round trip

TORCH_CELLS = {
    "rnn_tanh": (fastrnn.RNN, dict(nonlinearity="tanh"), "auto"),
    "rnn_relu": (fastrnn.RNN, dict(nonlinearity="relu"), "auto"),
    "lstm": (fastrnn.LSTM, {}, "auto"),
    # LSTM proj_size > 0 runs on the reference backend (no compiled kernel yet)
    "lstm_proj": (fastrnn.LSTM, dict(proj_size=4), "reference"),
    "gru": (fastrnn.GRU, {}, "auto"),
}
TORCH_CONFIGS = {
    "float32": dict(),
    "bidirectional_layers2_batch_first": dict(bidirectional=True, num_layers=2,
                                              batch_first=True),
    "float64_no_bias": dict(dtype="float64", bias=False, bidirectional=True),
}
CONFIG_ATTRS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                "bidirectional", "dropout")


def _torch():
    return pytest.importorskip("torch")


def _call_torch(module, x):
    torch = _torch()
    with torch.no_grad():
        y, state = module(torch.from_numpy(x))
    if isinstance(state, tuple):
        return y.numpy(), tuple(s.numpy() for s in state)
    return y.numpy(), state.numpy()


def _assert_state_dicts_equal(actual, expected):
    assert list(actual) == list(expected)
    for k in expected:
        a = np.asarray(actual[k].detach().numpy() if hasattr(actual[k], "detach") else actual[k])
        e = np.asarray(expected[k].detach().numpy() if hasattr(expected[k], "detach")
                       else expected[k])
        assert a.dtype == e.dtype, k
        np.testing.assert_array_equal(a, e, err_msg=k)


@pytest.mark.parametrize("config", list(TORCH_CONFIGS))
@pytest.mark.parametrize("cell", list(TORCH_CELLS))
def test_to_torch_round_trip(orng, cell, config):
    torch = _torch()
    cls, options, backend = TORCH_CELLS[cell]
    layer = cls(I, H, seed=11, backend=backend, **options, **TORCH_CONFIGS[config])
    module = layer.to_torch()
    assert type(module) is getattr(torch.nn, cls.__name__)
    for attr in CONFIG_ATTRS:
        assert getattr(module, attr) == getattr(layer, attr), attr
    if cls is fastrnn.RNN:
        assert module.nonlinearity == layer.nonlinearity
    if cls is fastrnn.LSTM:
        assert module.proj_size == layer.proj_size
    _assert_state_dicts_equal(module.state_dict(), layer.state_dict())

    shape = (B, T, I) if layer.batch_first else (T, B, I)
    x = orng.standard_normal(shape).astype(layer.dtype)
    y, state = layer(x)
    ty, tstate = _call_torch(module, x)
    assert_close(y, ty, layer.dtype, "layer y vs to_torch(layer) y")
    if isinstance(state, tuple):
        assert_close(state[0], tstate[0], layer.dtype, "h_n")
        assert_close(state[1], tstate[1], layer.dtype, "c_n")
    else:
        assert_close(state, tstate, layer.dtype, "h_n")

    back = fastrnn.from_torch(module, backend=backend)
    assert type(back) is cls and back.dtype == layer.dtype
    for attr in CONFIG_ATTRS + ("proj_size", "nonlinearity", "reset_after"):
        assert getattr(back, attr) == getattr(layer, attr), attr
    _assert_state_dicts_equal(back.state_dict(), layer.state_dict())
    yb, state_b = back(x)
    np.testing.assert_array_equal(yb, y)
    if isinstance(state, tuple):
        np.testing.assert_array_equal(state_b[0], state[0])
        np.testing.assert_array_equal(state_b[1], state[1])
    else:
        np.testing.assert_array_equal(state_b, state)


@pytest.mark.parametrize("cell", list(TORCH_CELLS))
def test_from_torch_then_to_torch_is_exact(orng, cell):
    """torch module -> from_torch -> to_torch gives back the same parameters."""
    torch = _torch()
    cls, options, backend = TORCH_CELLS[cell]
    torch.manual_seed(5)
    module = getattr(torch.nn, cls.__name__)(I, H, num_layers=2, bidirectional=True,
                                            **options)
    again = fastrnn.from_torch(module, backend=backend).to_torch()
    _assert_state_dicts_equal(again.state_dict(), module.state_dict())
    x = orng.standard_normal((T, B, I)).astype(np.float32)
    y1, s1 = _call_torch(module, x)
    y2, s2 = _call_torch(again, x)
    np.testing.assert_array_equal(y2, y1)


@pytest.mark.parametrize("layer,pattern", [
    pytest.param(lambda: fastrnn.RNN(I, H, nonlinearity="sigmoid"), "sigmoid", id="sigmoid"),
    pytest.param(lambda: fastrnn.GRU(I, H, reset_after=False), "reset_after",
                 id="reset_after"),
    pytest.param(lambda: fastrnn.LSTM(I, H, reverse=True), "reverse", id="reverse"),
])
def test_to_torch_refuses(layer, pattern):
    _torch()
    with pytest.raises(NotImplementedError, match=pattern):
        layer().to_torch()
