"""Weights in and out: PyTorch modules (and, later, Keras layers and ONNX nodes)."""

import numpy as np

from fastrnn._layers import GRU, LSTM, RNN

__all__ = ["from_torch", "to_torch", "to_onnx", "from_onnx", "from_keras"]

_TORCH_MODES = {"RNN_TANH": (RNN, "tanh"), "RNN_RELU": (RNN, "relu"),
                "LSTM": (LSTM, None), "GRU": (GRU, None)}


def from_torch(module, backend="auto"):
    """The fastrnn layer equivalent to a torch.nn.RNN, LSTM or GRU, weights included."""
    mode = getattr(module, "mode", None)
    if mode not in _TORCH_MODES:
        raise TypeError(f"from_torch expects torch.nn.RNN, LSTM or GRU, got "
                        f"{type(module).__name__}")
    cls, nonlinearity = _TORCH_MODES[mode]
    import torch
    weights = {name: p.detach().cpu() for name, p in module.named_parameters()}
    if not weights:
        raise NotImplementedError(f"from_torch: {type(module).__name__} holds no float "
                                  "parameters (a quantized module?)")
    torch_dtype = next(iter(weights.values())).dtype
    if torch_dtype not in (torch.float32, torch.float64):
        raise NotImplementedError(f"from_torch: parameter dtype {torch_dtype} is not "
                                  "supported (float32 or float64)")
    dtype = np.float32 if torch_dtype == torch.float32 else np.float64
    kwargs = dict(input_size=module.input_size, hidden_size=module.hidden_size,
                  num_layers=module.num_layers, bias=module.bias,
                  batch_first=module.batch_first, dropout=module.dropout,
                  bidirectional=module.bidirectional, dtype=dtype, backend=backend)
    if nonlinearity is not None:
        kwargs["nonlinearity"] = nonlinearity
    if getattr(module, "proj_size", 0):
        kwargs["proj_size"] = module.proj_size
    layer = cls(**kwargs)
    layer.load_state_dict({k: v.numpy() for k, v in weights.items()})
    return layer


def to_torch(layer):
    """The torch.nn module equivalent to a fastrnn layer (needs torch)."""
    import torch

    kwargs = dict(input_size=layer.input_size, hidden_size=layer.hidden_size,
                  num_layers=layer.num_layers, bias=layer.bias,
                  batch_first=layer.batch_first, dropout=layer.dropout,
                  bidirectional=layer.bidirectional,
                  dtype=torch.float32 if layer.dtype == np.float32 else torch.float64)
    if layer.reverse:
        raise NotImplementedError("to_torch: torch.nn has no reverse-only layer")
    if layer.mode == "rnn":
        if layer.nonlinearity == "sigmoid":
            raise NotImplementedError("to_torch: torch.nn.RNN has no nonlinearity='sigmoid'")
        module = torch.nn.RNN(nonlinearity=layer.nonlinearity, **kwargs)
    elif layer.mode == "lstm":
        module = torch.nn.LSTM(proj_size=layer.proj_size, **kwargs)
    else:
        if not layer.reset_after:
            raise NotImplementedError("to_torch: torch.nn.GRU has no reset_after=False")
        module = torch.nn.GRU(**kwargs)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(np.ascontiguousarray(layer.params[name])))
    return module


# ------------------------------------------------------------------------ ONNX
# ONNX orders gates differently from torch: LSTM i, o, f, c; GRU z, r, h.
_ONNX_GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}
_ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_ONNX_ACTIVATION = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _reorder_gates(w, mode, H):
    """torch gate blocks (G*H, ...) -> ONNX gate order."""
    blocks = [w[g * H:(g + 1) * H] for g in _ONNX_GATE_ORDER[mode]]
    return np.concatenate(blocks, axis=0)


def to_onnx(layer, opset=17):
    """An ONNX model (input ``x`` (T, B, I), output ``y``) running ``layer``.

    One ONNX node per layer; each node's Y (T, D, B, H) is reshaped to
    (T, B, D * H) before the next.  The last node's Y is the output ``y``,
    ONNX-shaped (T, D, B, H).  Needs the ``onnx`` package.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layer.proj_size:
        raise NotImplementedError("to_onnx: ONNX LSTM has no projection (proj_size)")
    if layer.batch_first:
        raise NotImplementedError("to_onnx: exports time-major layers (batch_first=False)")
    if layer.reverse and layer.num_layers > 1:
        raise NotImplementedError("to_onnx: reverse=True with num_layers > 1")
    mode, H, D = layer.mode, layer.hidden_size, layer.num_directions
    elem = TensorProto.FLOAT if layer.dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []
    current = "x"
    for k in range(layer.num_layers):
        ws, rs, bs = [], [], []
        for d in range(D):
            w = layer._weights(k, d)
            ws.append(_reorder_gates(w["w_ih"], mode, H))
            rs.append(_reorder_gates(w["w_hh"], mode, H))
            if layer.bias:
                bs.append(np.concatenate([_reorder_gates(w["b_ih"], mode, H),
                                          _reorder_gates(w["b_hh"], mode, H)]))
        names = [f"W{k}", f"R{k}"] + ([f"B{k}"] if layer.bias else [])
        arrays = [np.stack(ws), np.stack(rs)] + ([np.stack(bs)] if layer.bias else [])
        inits += [numpy_helper.from_array(a.astype(layer.dtype), n)
                  for n, a in zip(names, arrays)]
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else
                     "reverse" if layer.reverse else "forward")
        if mode == "gru":
            attrs["linear_before_reset"] = int(layer.reset_after)
        if mode == "rnn":
            attrs["activations"] = [_ONNX_ACTIVATION[layer.nonlinearity]] * D
        last = k == layer.num_layers - 1
        y_name = "y" if last else f"Y{k}"
        nodes.append(helper.make_node(_ONNX_OP[mode], [current] + names, [y_name],
                                      name=f"{mode}_{k}", **attrs))
        if not last:
            shape_name = f"shape{k}"
            inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), shape_name))
            nodes.append(helper.make_node("Transpose", [y_name], [f"Yt{k}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"Yt{k}", shape_name], [f"X{k + 1}"]))
            current = f"X{k + 1}"
    graph = helper.make_graph(
        nodes, f"fastrnn_{mode}",
        [helper.make_tensor_value_info("x", elem, ["T", "B", layer.input_size])],
        [helper.make_tensor_value_info("y", elem, ["T", D, "B", H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model


_TORCH_FROM_ONNX = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
_ONNX_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_FROM_ONNX_ACTIVATION = {v: k for k, v in _ONNX_ACTIVATION.items()}


def _onnx_constant(graph, name, what):
    """The value of graph input ``name`` if it is an initializer or Constant output."""
    from onnx import numpy_helper
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for n in graph.node:
        if n.op_type == "Constant" and name in n.output:
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    raise NotImplementedError(f"from_onnx: {what} ({name!r}) is computed at run time; "
                              "only initializers or Constant nodes can be converted")


def _onnx_has_constant(graph, name):
    return any(i.name == name for i in graph.initializer) or any(
        n.op_type == "Constant" and name in n.output for n in graph.node)


# Ops that only move, repeat or retype their first input's values.
_ONNX_PASS_THROUGH = {"Expand", "Tile", "Reshape", "Unsqueeze", "Squeeze", "Identity",
                      "Cast", "Transpose", "Flatten"}


def _onnx_source(graph, name):
    """Where the values of node input ``name`` come from, followed back through ops
    that only move or repeat them (a state Expand-ed over the batch, say):
    ("constant", array), ("input", None) for a graph input given at run time, or
    ("computed", op_type) for anything else."""
    from onnx import numpy_helper
    producers = {out: n for n in graph.node for out in n.output}
    graph_inputs = {i.name for i in graph.input}
    for _ in range(len(graph.node) + 1):
        if _onnx_has_constant(graph, name):
            return "constant", _onnx_constant(graph, name, name)
        if name in graph_inputs:
            return "input", None
        n = producers.get(name)
        if n is None:
            return "computed", None
        if n.op_type == "ConstantOfShape":
            value = [numpy_helper.to_array(a.t) for a in n.attribute if a.name == "value"]
            return "constant", value[0] if value else np.zeros(1, np.float32)
        if n.op_type not in _ONNX_PASS_THROUGH or not n.input:
            return "computed", n.op_type
        name = n.input[0]
    return "computed", None


def from_onnx(model_or_path, node=None, backend="auto"):
    """The fastrnn layer equivalent to an ONNX ``RNN``, ``LSTM`` or ``GRU`` node.

    ``node`` names the node when the graph has several.  The layer's ``y`` (T, B, D*H)
    is ONNX's ``Y`` (T, D, B, H) with the direction axis moved next to H (and
    ``layout=1`` gives a batch_first layer).  Attributes fastrnn cannot express
    exactly (peepholes, ``clip``, ``input_forget``, other activations) raise
    NotImplementedError naming them.
    """
    import os

    import onnx
    from onnx import helper

    model = onnx.load(os.fspath(model_or_path)) \
        if isinstance(model_or_path, (str, bytes, os.PathLike)) else model_or_path
    graph = model.graph
    candidates = [n for n in graph.node if n.op_type in _TORCH_FROM_ONNX]
    if node is None:
        if len(candidates) != 1:
            names = [n.name for n in candidates]
            raise ValueError(f"from_onnx: the graph has {len(candidates)} RNN/LSTM/GRU "
                             f"nodes {names}; pass node= to choose one")
        onode = candidates[0]
    else:
        matches = [n for n in candidates if n.name == node]
        if not matches:
            raise ValueError(f"from_onnx: no RNN/LSTM/GRU node named {node!r} "
                             f"(have {[n.name for n in candidates]})")
        onode = matches[0]
    op = onode.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in onode.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else
                 [x.decode() if isinstance(x, bytes) else x for x in v]
                 if isinstance(v, list) else v) for k, v in attrs.items()}
    inputs = list(onode.input) + [""] * 8
    W = _onnx_constant(graph, inputs[1], "W")
    R = _onnx_constant(graph, inputs[2], "R")
    B = _onnx_constant(graph, inputs[3], "B") if inputs[3] else None
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            raise NotImplementedError(f"from_onnx: attribute {name!r} is not supported")
    if attrs.get("input_forget", 0):
        raise NotImplementedError("from_onnx: attribute 'input_forget' is not supported")
    if inputs[4]:
        kind, _ = _onnx_source(graph, inputs[4])
        if kind != "input":
            what = "a constant" if kind == "constant" else "computed"
            raise NotImplementedError(f"from_onnx: sequence_lens is {what} in the graph; a "
                                      "layer takes lengths= at call time instead")
    for slot, name in ((5, "initial_h"), (6, "initial_c")):
        if not inputs[slot]:
            continue
        kind, value = _onnx_source(graph, inputs[slot])
        if kind == "computed" or (kind == "constant" and np.any(value != 0)):
            what = "a nonzero constant" if kind == "constant" else "computed"
            raise NotImplementedError(f"from_onnx: {name} is {what} in the graph; a layer "
                                      "starts from zeros or from the hx given at call time")
    if op == "LSTM" and inputs[7]:
        P = _onnx_constant(graph, inputs[7], "P (peepholes)")
        if np.any(P != 0):
            raise NotImplementedError("from_onnx: LSTM peepholes (input P) are not supported")
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"from_onnx: unknown direction {direction!r}")
    D = 2 if direction == "bidirectional" else 1
    G = len(_TORCH_FROM_ONNX[op])
    H = int(attrs.get("hidden_size", R.shape[-1]))
    if W.shape[0] != D or W.shape[1] != G * H or R.shape != (D, G * H, H):
        raise ValueError(f"from_onnx: W {W.shape} / R {R.shape} do not fit hidden_size={H} "
                         f"and direction={direction!r}")
    kwargs = dict(input_size=int(W.shape[2]), hidden_size=H, bias=B is not None,
                  batch_first=bool(attrs.get("layout", 0)), bidirectional=D == 2,
                  dtype=W.dtype, backend=backend)
    if W.dtype not in (np.float32, np.float64):
        raise NotImplementedError(f"from_onnx: weight dtype {W.dtype} is not supported")
    activations = attrs.get("activations")
    reverse = direction == "reverse"
    if op == "RNN":
        acts = activations or ["Tanh"] * D
        if len(set(acts)) != 1 or acts[0] not in _FROM_ONNX_ACTIVATION:
            raise NotImplementedError(f"from_onnx: RNN activations {acts} (fastrnn has one "
                                      "of Tanh, Relu, Sigmoid for both directions)")
        layer = RNN(nonlinearity=_FROM_ONNX_ACTIVATION[acts[0]], reverse=reverse, **kwargs)
    elif op == "LSTM":
        if activations and activations != _ONNX_DEFAULT_ACTIVATIONS["LSTM"] * D:
            raise NotImplementedError(f"from_onnx: LSTM activations {activations}")
        layer = LSTM(reverse=reverse, **kwargs)
    else:
        if activations and activations != _ONNX_DEFAULT_ACTIVATIONS["GRU"] * D:
            raise NotImplementedError(f"from_onnx: GRU activations {activations}")
        layer = GRU(reset_after=bool(attrs.get("linear_before_reset", 0)), reverse=reverse,
                    **kwargs)
    order = _TORCH_FROM_ONNX[op]
    state = {}
    for d in range(D):
        sfx = "_l0" + ("_reverse" if d else "")
        state[f"weight_ih{sfx}"] = _reorder_blocks(W[d], order, H)
        state[f"weight_hh{sfx}"] = _reorder_blocks(R[d], order, H)
        if B is not None:
            state[f"bias_ih{sfx}"] = _reorder_blocks(B[d, :G * H], order, H)
            state[f"bias_hh{sfx}"] = _reorder_blocks(B[d, G * H:], order, H)
    layer.load_state_dict(state)
    return layer


def _reorder_blocks(w, order, H):
    """Gate blocks of H rows taken in ``order``."""
    return np.concatenate([w[g * H:(g + 1) * H] for g in order], axis=0)


# ----------------------------------------------------------------------- Keras
_KERAS_CLASSES = {"SimpleRNN": RNN, "LSTM": LSTM, "GRU": GRU}
# Keras GRU gates z, r, h -> torch r, z, n; LSTM i, f, c, o is torch's i, f, g, o.
_TORCH_FROM_KERAS = {"SimpleRNN": [0], "LSTM": [0, 1, 2, 3], "GRU": [1, 0, 2]}


def _keras_activation(fn):
    name = getattr(fn, "__name__", None)
    if name is None:
        import keras
        name = keras.activations.serialize(fn)
        name = name if isinstance(name, str) else name.get("config", name)
    return name


def _keras_cell_config(layer, backward_copy=False):
    """(class name, the fastrnn kwargs of one direction) for a Keras recurrent layer.

    ``backward_copy``: the layer is the backward half Keras builds inside a
    Bidirectional, whose go_backwards=True is exactly fastrnn's reverse direction.
    """
    kind = type(layer).__name__
    if kind not in _KERAS_CLASSES:
        raise NotImplementedError(f"from_keras: layer {kind} is not supported "
                                  "(SimpleRNN, LSTM, GRU or Bidirectional around one)")
    if getattr(layer, "go_backwards", False) and not backward_copy:
        raise NotImplementedError(f"from_keras: {kind}(go_backwards=True) is not supported "
                                  "(its outputs come in reversed time order)")
    if getattr(layer, "stateful", False):
        raise NotImplementedError(f"from_keras: {kind}(stateful=True) is not supported")
    if getattr(layer, "unroll", False):
        pass                                  # unrolling changes nothing numerically
    act = _keras_activation(layer.activation)
    kwargs = {}
    if kind == "SimpleRNN":
        if act not in ("tanh", "relu", "sigmoid"):
            raise NotImplementedError(f"from_keras: SimpleRNN activation {act!r} "
                                      "(tanh, relu or sigmoid)")
        kwargs["nonlinearity"] = act
    else:
        rec = _keras_activation(layer.recurrent_activation)
        if act != "tanh":
            raise NotImplementedError(f"from_keras: {kind} activation {act!r} (only tanh)")
        if rec != "sigmoid":
            raise NotImplementedError(f"from_keras: {kind} recurrent_activation {rec!r} "
                                      "(only sigmoid)")
        if kind == "GRU":
            kwargs["reset_after"] = bool(layer.reset_after)
    return kind, kwargs


def _keras_options(layer):
    """The Keras options that fix a direction's equations, by Keras' names."""
    opts = dict(layer=type(layer).__name__, units=layer.units, use_bias=layer.use_bias,
                activation=_keras_activation(layer.activation))
    if hasattr(layer, "recurrent_activation"):
        opts["recurrent_activation"] = _keras_activation(layer.recurrent_activation)
    if hasattr(layer, "reset_after"):
        opts["reset_after"] = layer.reset_after
    return opts


def _keras_state(kind, weights, units, use_bias, reset_after, sfx):
    """torch-layout state_dict entries of one direction from Keras' get_weights()."""
    order = _TORCH_FROM_KERAS[kind]
    kernel, recurrent = weights[0], weights[1]
    state = {f"weight_ih{sfx}": _reorder_blocks(kernel.T, order, units),
             f"weight_hh{sfx}": _reorder_blocks(recurrent.T, order, units)}
    if use_bias:
        bias = weights[2]
        if kind == "GRU" and reset_after:
            b_ih, b_hh = bias[0], bias[1]
        else:
            b_ih, b_hh = bias, np.zeros_like(bias)
        state[f"bias_ih{sfx}"] = _reorder_blocks(b_ih, order, units)
        state[f"bias_hh{sfx}"] = _reorder_blocks(b_hh, order, units)
    return state


def from_keras(layer, backend="auto"):
    """The fastrnn layer equivalent to a built Keras 3 ``SimpleRNN``, ``LSTM``, ``GRU``
    or ``Bidirectional`` (``merge_mode="concat"``) around one; given a Keras model
    (Sequential or a linear functional model), the equivalent fastrnn.Sequential
    (see fastrnn.keras_models.from_keras_model).

    The result is ``batch_first=True``.  Its output sequence ``y`` (B, T, D*units)
    equals the Keras layer's output with ``return_sequences=True``.  With
    ``return_sequences=False`` Keras returns each direction's final state, i.e.
    fastrnn's ``h_n`` (directions concatenated; for a unidirectional layer on full
    sequences that is ``y[:, -1]``); ``return_state=True`` adds Keras' final states,
    which are fastrnn's ``h_n`` (and ``c_n``) per direction.
    """
    import sys
    model_cls = getattr(sys.modules.get("keras"), "Model", None)
    if model_cls is not None and isinstance(layer, model_cls):
        from fastrnn.keras_models import from_keras_model
        return from_keras_model(layer, backend=backend)
    kind = type(layer).__name__
    bidirectional = kind == "Bidirectional"
    if bidirectional:
        if layer.merge_mode != "concat":
            raise NotImplementedError(f"from_keras: Bidirectional(merge_mode="
                                      f"{layer.merge_mode!r}) (only 'concat')")
        directions = [layer.forward_layer, layer.backward_layer]
        fwd_kind, kwargs = _keras_cell_config(directions[0])
        bwd_kind, bwd_kwargs = _keras_cell_config(directions[1], backward_copy=True)
        fwd_opts, bwd_opts = (_keras_options(d) for d in directions)
        differ = [k for k in fwd_opts if fwd_opts[k] != bwd_opts.get(k)]
        if differ:
            detail = ", ".join(f"{k}={bwd_opts.get(k)!r} vs {fwd_opts[k]!r}" for k in differ)
            raise NotImplementedError(
                f"from_keras: Bidirectional whose backward layer differs from its forward "
                f"layer ({detail}); fastrnn's two directions share one configuration")
    else:
        fwd_kind, kwargs = _keras_cell_config(layer)
        directions = [layer]
    first = directions[0]
    weights = [d.get_weights() for d in directions]
    if not weights[0]:
        raise ValueError("from_keras: the Keras layer has no weights yet; build it "
                         "(call it on an input) first")
    units = int(first.units)
    use_bias = bool(first.use_bias)
    dtype = weights[0][0].dtype
    if dtype not in (np.float32, np.float64):
        raise NotImplementedError(f"from_keras: weight dtype {dtype} is not supported")
    cls = _KERAS_CLASSES[fwd_kind]
    out = cls(int(weights[0][0].shape[0]), units, bias=use_bias, batch_first=True,
              bidirectional=bidirectional, dtype=dtype, backend=backend, **kwargs)
    state = {}
    for d, w in enumerate(weights):
        state.update(_keras_state(fwd_kind, w, units, use_bias,
                                  kwargs.get("reset_after", True),
                                  "_l0" + ("_reverse" if d else "")))
    out.load_state_dict(state)
    return out
