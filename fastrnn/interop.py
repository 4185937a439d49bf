"""Weights in and out: PyTorch modules (and, later, Keras layers and ONNX nodes)."""

import numpy as np

from fastrnn._layers import GRU, LSTM, RNN

__all__ = ["from_torch", "to_torch"]

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
