"""Weights in and out: PyTorch modules (and, later, Keras layers and ONNX nodes)."""

import numpy as np

from fastrnn._layers import GRU, LSTM, RNN

__all__ = ["from_torch", "to_torch", "to_onnx"]

_TORCH_MODES = {"RNN_TANH": (RNN, "tanh"), "RNN_RELU": (RNN, "relu"),
                "LSTM": (LSTM, None), "GRU": (GRU, None)}


def from_torch(module, backend="auto"):
    """The fastrnn layer equivalent to a torch.nn.RNN, LSTM or GRU, weights included."""
    mode = getattr(module, "mode", None)
    if mode not in _TORCH_MODES:
        raise TypeError(f"from_torch expects torch.nn.RNN, LSTM or GRU, got "
                        f"{type(module).__name__}")
    cls, nonlinearity = _TORCH_MODES[mode]
    weights = {name: p.detach().cpu() for name, p in module.named_parameters()}
    dtype = next(iter(weights.values())).numpy().dtype
    if dtype not in (np.float32, np.float64):
        raise NotImplementedError(f"from_torch: parameter dtype {dtype} is not supported "
                                  "(float32 or float64)")
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
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
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
