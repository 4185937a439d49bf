"""Whole Keras 3 models in: a Sequential (or a linear functional model) as a fastrnn Sequential.

Supported layers: ``InputLayer``, ``Embedding`` (``mask_zero`` included),
``SimpleRNN``/``LSTM``/``GRU``/``Bidirectional`` (any ``return_sequences``; without it
a ``FinalState`` follows the recurrent layer), ``Dense`` (linear, relu, tanh, sigmoid,
softmax) and ``Dropout`` (identity at inference).  Anything else raises ``NotImplementedError``
naming the layer and option (nested models too: Keras drops the mask at their
boundary, so they are not simply flattened).

Masking: with ``Embedding(mask_zero=True)`` Keras' recurrent layers skip the steps
whose token is 0 wherever they stand; ``pad_sequences`` pads at the front by
default, so real steps usually come last.  The converted model's
``Embedding(mask_zero=True)`` runs each sequence's real tokens in order (moving them
to the front for fastrnn's kernels) and puts sequence outputs back at their
original steps; ``masked_output`` reproduces what Keras shows at masked steps.
"""

import numpy as np

from fastrnn.interop import from_keras as layer_from_keras
from fastrnn.models import Dense, Dropout, Embedding, FinalState, Sequential

__all__ = ["from_keras_model"]

_RECURRENT = ("SimpleRNN", "LSTM", "GRU", "Bidirectional")
_DENSE_ACTIVATIONS = {"linear": None, "relu": "relu", "tanh": "tanh",
                      "sigmoid": "sigmoid", "softmax": "softmax"}
_FLOAT_DTYPES = ("float32", "float64")


def _activation_name(fn):
    name = getattr(fn, "__name__", None)
    if name is None:
        import keras
        name = keras.activations.serialize(fn)
    return name if isinstance(name, str) else repr(name)


def _is_model(obj):
    import keras
    return isinstance(obj, keras.Model)


def _data_inputs(node):
    """ids of the tensors a call node feeds its layer, leaving out the boolean masks
    that Keras passes along beside them (``mask=``)."""
    return [id(t) for t in node.input_tensors if str(t.dtype) != "bool"]


def _linear_layers(model):
    """The layers of ``model`` in order, checking that they form one chain."""
    if type(model).__name__ != "Sequential":
        inputs, outputs = list(model.inputs or []), list(model.outputs or [])
        if len(inputs) != 1 or len(outputs) != 1:
            raise NotImplementedError(f"from_keras: model {model.name!r} has "
                                      f"{len(inputs)} inputs and {len(outputs)} outputs; "
                                      "only single-input, single-output chains convert")
        previous = None
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":
                previous = layer
                continue
            ok = previous is not None and len(layer._inbound_nodes) == 1 and \
                _data_inputs(layer._inbound_nodes[0]) == [id(previous.output)]
            if not ok:
                raise NotImplementedError(
                    f"from_keras: model {model.name!r} is not a linear chain (layer "
                    f"{layer.name!r} does not take the previous layer's output alone)")
            previous = layer
        if previous is None or previous.output is not outputs[0]:
            raise NotImplementedError(f"from_keras: model {model.name!r} is not a "
                                      "linear chain ending in its output")
    return list(model.layers)


def _check_dtype(layer):
    policy = getattr(layer, "dtype_policy", None)
    if policy is None:
        return
    compute = str(getattr(policy, "compute_dtype", "float32"))
    variable = str(getattr(policy, "variable_dtype", compute))
    if compute not in _FLOAT_DTYPES or compute != variable:
        raise NotImplementedError(f"from_keras: layer {layer.name!r} "
                                  f"({type(layer).__name__}) has dtype policy "
                                  f"{getattr(policy, 'name', policy)!r}; float32 or float64 "
                                  "computed in the variables' dtype converts")
    weight_dtypes = {str(w.dtype) for w in layer.get_weights()}
    if weight_dtypes and weight_dtypes != {compute}:
        raise NotImplementedError(f"from_keras: layer {layer.name!r} "
                                  f"({type(layer).__name__}) computes in {compute} but holds "
                                  f"{', '.join(sorted(weight_dtypes))} weights (give the "
                                  "wrapper the same dtype as the layer it wraps)")
    if getattr(policy, "quantization_mode", None):
        raise NotImplementedError(f"from_keras: layer {layer.name!r} is quantized "
                                  f"({policy.quantization_mode})")


def _convert_embedding(layer):
    weights = layer.get_weights()
    if len(weights) != 1:
        raise NotImplementedError(f"from_keras: Embedding {layer.name!r} holds "
                                  f"{len(weights)} weights (LoRA or quantized embeddings "
                                  "do not convert)")
    table = weights[0]
    item = Embedding(int(layer.input_dim), int(layer.output_dim), dtype=table.dtype,
                     mask_zero=bool(layer.mask_zero))
    item.load_state_dict({"weight": table})
    return item


def _convert_dense(layer):
    if getattr(layer, "lora_enabled", False):
        raise NotImplementedError(f"from_keras: Dense {layer.name!r} with LoRA enabled")
    name = _activation_name(layer.activation)
    if name not in _DENSE_ACTIVATIONS:
        raise NotImplementedError(f"from_keras: Dense {layer.name!r} activation {name!r} "
                                  f"(supported: {', '.join(_DENSE_ACTIVATIONS)})")
    weights = layer.get_weights()
    kernel = weights[0]                         # Keras: (in, out); torch: (out, in)
    item = Dense(kernel.shape[0], int(layer.units), activation=_DENSE_ACTIVATIONS[name],
                 bias=bool(layer.use_bias), dtype=kernel.dtype)
    state = {"weight": kernel.T}
    if layer.use_bias:
        state["bias"] = weights[1]
    item.load_state_dict(state)
    return item


def _zero_output_for_mask(layer):
    inner = layer.forward_layer if type(layer).__name__ == "Bidirectional" else layer
    return bool(getattr(inner, "zero_output_for_mask", False))


def from_keras_model(model, backend="auto"):
    """The fastrnn ``Sequential`` equivalent to a built Keras 3 model.

    Its output equals ``model.predict(x)`` to rounding, for token batches padded
    with 0 at the front or the back when the Embedding has ``mask_zero=True``.
    ``backend`` is passed to the recurrent layers.
    """
    if not _is_model(model):
        raise TypeError(f"from_keras_model expects a Keras model, got {type(model).__name__}")
    if not model.built or not model.weights:
        raise ValueError(f"from_keras: model {model.name!r} is not built; call it on a "
                         "batch or give it an Input first")
    items = []
    last_recurrent = None
    for layer in _linear_layers(model):
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        _check_dtype(layer)
        if kind == "Embedding":
            if items:
                raise NotImplementedError(f"from_keras: Embedding {layer.name!r} must be "
                                          "the model's first layer")
            items.append(_convert_embedding(layer))
        elif kind in _RECURRENT:
            if layer.return_state:
                raise NotImplementedError(f"from_keras: {kind} {layer.name!r} with "
                                          "return_state=True (a chain passes one tensor)")
            if not layer.return_sequences and _zero_output_for_mask(layer) and \
                    items and getattr(items[0], "mask_zero", False):
                # Keras returns the output of the last step, zeros where that step
                # is padding (post-padded rows); FinalState is each row's last real step.
                raise NotImplementedError(
                    f"from_keras: {kind} {layer.name!r} with zero_output_for_mask=True "
                    "and return_sequences=False after a mask_zero Embedding")
            items.append(layer_from_keras(layer, backend=backend))
            last_recurrent = layer
            if not layer.return_sequences:
                items.append(FinalState())
        elif kind == "Dense":
            items.append(_convert_dense(layer))
        elif kind == "Dropout":
            if getattr(layer, "noise_shape", None) is not None:
                raise NotImplementedError(f"from_keras: Dropout {layer.name!r} with "
                                          "noise_shape")
            items.append(Dropout(float(layer.rate)))
        else:
            raise NotImplementedError(f"from_keras: layer {layer.name!r} of type {kind} is "
                                      "not supported (InputLayer, Embedding, SimpleRNN, "
                                      "LSTM, GRU, Bidirectional, Dense, Dropout)")
    if not items:
        raise NotImplementedError(f"from_keras: model {model.name!r} has no layer to convert")
    masked_output = "zeros"
    if last_recurrent is not None and last_recurrent.return_sequences and \
            not _zero_output_for_mask(last_recurrent):
        masked_output = "previous"
    dtypes = {np.dtype(item.dtype) for item in items if item.dtype is not None}
    if len(dtypes) > 1:
        raise NotImplementedError(f"from_keras: model {model.name!r} mixes dtypes "
                                  f"{sorted(d.name for d in dtypes)}")
    return Sequential(items, masked_output=masked_output)
