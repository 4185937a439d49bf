"""Whole Keras 3 models in (fastrnn.keras_models.from_keras_model): the tutorials'
text classifier, time-series regressor and bidirectional variants, with random
weights, against ``model.predict`` / ``model(x)`` on pre-, post- and hole-padded
token batches."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
layers = keras.layers

from fastrnn.keras_models import from_keras_model  # noqa: E402
from fastrnn.models import Sequential  # noqa: E402

from conftest import assert_close  # noqa: E402

# Keras 3.15 on NumPy 2 warns on every weight read.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

VOCAB, BATCH, STEPS = 30, 6, 9


def randomize(model, rng, scale=0.5):
    """Every weight uniform(-scale, scale), biases included (Keras starts them at 0)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.uniform(-scale, scale, w.shape).astype(w.dtype)
                               for w in weights])
    return model


def token_batch(rng, padding):
    """Tokens in 1..VOCAB-1 padded with 0: "pre" (pad_sequences' default), "post",
    or "holes" (zeros anywhere); lengths include 1, STEPS and 0 (an empty row)."""
    lengths = rng.integers(1, STEPS + 1, BATCH)
    lengths[:3] = STEPS, 1, 0
    tokens = np.zeros((BATCH, STEPS), np.int32)
    for b, length in enumerate(lengths):
        seq = rng.integers(1, VOCAB, length)
        if padding == "pre":
            tokens[b, STEPS - length:] = seq
        elif padding == "post":
            tokens[b, :length] = seq
        else:
            tokens[b] = rng.integers(1, VOCAB, STEPS)
            tokens[b, rng.random(STEPS) < 0.4] = 0
    return tokens


def keras_model(body, rng, mask_zero=True):
    model = keras.Sequential([keras.Input((STEPS,), dtype="int32"),
                              layers.Embedding(VOCAB, 8, mask_zero=mask_zero)] + body)
    return randomize(model, rng)


def assert_matches(converted, model, x):
    expected = model.predict(x, verbose=0)
    actual = converted(x)
    assert actual.shape == expected.shape
    assert np.std(expected) > 1e-3, "degenerate test model: outputs barely vary"
    assert_close(actual, expected, "float32")


CLASSIFIER_BODIES = {
    "lstm_softmax": lambda: [layers.LSTM(16), layers.Dense(4, activation="softmax")],
    "gru_softmax": lambda: [layers.GRU(16), layers.Dropout(0.5),
                            layers.Dense(4, activation="softmax")],
    "gru_reset_before": lambda: [layers.GRU(7, reset_after=False),
                                 layers.Dense(3, activation="sigmoid")],
    "bidirectional_lstm": lambda: [layers.Bidirectional(layers.LSTM(6)),
                                   layers.Dense(8, activation="relu"),
                                   layers.Dense(3, activation="softmax")],
    "stacked_sequences": lambda: [layers.SimpleRNN(6, return_sequences=True),
                                  layers.GRU(5), layers.Dense(2, activation="tanh")],
    "dense_before_recurrent": lambda: [layers.Dense(6, activation="tanh"),
                                       layers.Dropout(0.2), layers.LSTM(5), layers.Dense(3)],
    "per_step_lstm": lambda: [layers.LSTM(7, return_sequences=True), layers.Dense(4)],
    "per_step_bidirectional": lambda: [
        layers.Bidirectional(layers.GRU(5, return_sequences=True)),
        layers.Dense(3, activation="tanh")],
}


@pytest.mark.parametrize("padding", ["pre", "post", "holes"])
@pytest.mark.parametrize("body", list(CLASSIFIER_BODIES))
def test_masked_token_models_match_predict(rng, body, padding):
    model = keras_model(CLASSIFIER_BODIES[body](), rng)
    converted = from_keras_model(model)
    assert isinstance(converted, Sequential) and converted.embedding.mask_zero
    assert_matches(converted, model, token_batch(rng, padding))


def test_unmasked_embedding_runs_every_step(rng):
    model = keras_model([layers.LSTM(8), layers.Dense(3)], rng, mask_zero=False)
    converted = from_keras_model(model)
    assert not converted.embedding.mask_zero
    assert_matches(converted, model, token_batch(rng, "pre"))


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM"])
def test_timeseries_regressor_matches_model_call(rng, cell):
    recurrent = getattr(layers, cell)
    model = randomize(keras.Sequential([
        keras.Input((10, 1)), recurrent(64, return_sequences=True), recurrent(32),
        layers.Dense(1)]), rng, scale=0.3)
    converted = from_keras_model(model)
    assert [type(item).__name__ for item in converted] == [
        {"SimpleRNN": "RNN"}.get(cell, cell), {"SimpleRNN": "RNN"}.get(cell, cell),
        "FinalState", "Dense"]
    x = rng.standard_normal((16, 10, 1)).astype(np.float32)
    expected = np.asarray(model(x).detach().cpu())
    assert_close(converted(x), expected, "float32")
    assert np.std(expected) > 1e-3


def test_functional_chain(rng):
    inputs = keras.Input((STEPS,), dtype="int32")
    h = layers.Embedding(VOCAB, 8, mask_zero=True)(inputs)
    h = layers.Bidirectional(layers.GRU(5, return_sequences=True))(h)
    h = layers.LSTM(4)(h)
    outputs = layers.Dense(3, activation="softmax")(h)
    model = randomize(keras.Model(inputs, outputs), rng)
    converted = from_keras_model(model)
    assert [type(item).__name__ for item in converted] == [
        "Embedding", "GRU", "LSTM", "FinalState", "Dense"]
    assert_matches(converted, model, token_batch(rng, "pre"))


def test_float64_model(rng):
    # LSTM and GRU only: Keras 3's float64 Dense and SimpleRNN on the torch backend
    # agree with NumPy (and with torch) only to about 1e-7.
    model = randomize(keras.Sequential([
        keras.Input((5, 3), dtype="float64"),
        layers.GRU(4, return_sequences=True, dtype="float64"),
        layers.LSTM(3, dtype="float64")]), rng)
    x = rng.standard_normal((4, 5, 3))
    converted = from_keras_model(model)
    assert converted.dtype == np.float64
    np.testing.assert_allclose(converted(x), np.asarray(model(x).detach().cpu()),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("build, match", [
    (lambda: [layers.Conv1D(4, 3)], "Conv1D"),
    (lambda: [layers.LSTM(4), layers.Dense(2, activation="gelu")], "activation 'gelu'"),
    (lambda: [layers.LSTM(4, return_state=True)], "return_state"),
    (lambda: [layers.Masking(), layers.LSTM(4)], "Masking"),
    (lambda: [layers.LSTM(4, go_backwards=True)], "go_backwards"),
    (lambda: [keras.Sequential([layers.LSTM(4)])], "Sequential"),
], ids=["conv", "gelu", "return_state", "masking", "go_backwards", "nested_model"])
def test_unsupported_layers_and_options_name_themselves(rng, build, match):
    model = keras.Sequential([keras.Input((STEPS, 3))] + build())
    with pytest.raises(NotImplementedError, match=match):
        from_keras_model(model)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_zero_output_for_mask_on_a_final_state_is_refused(rng, cell):
    """Keras then zeroes the rows whose last step is padding, where FinalState gives
    their last real step: refused after a masking Embedding, converted without one."""
    recurrent = getattr(layers, cell)
    masked = randomize(keras.Sequential([
        keras.Input((STEPS,), dtype="int32"), layers.Embedding(VOCAB, 3, mask_zero=True),
        recurrent(2, zero_output_for_mask=True)]), rng)
    with pytest.raises(NotImplementedError, match="zero_output_for_mask"):
        from_keras_model(masked)
    unmasked = randomize(keras.Sequential([
        keras.Input((STEPS, 3)), recurrent(2, zero_output_for_mask=True)]), rng)
    x = rng.standard_normal((4, STEPS, 3)).astype(np.float32)
    assert_close(from_keras_model(unmasked)(x), np.asarray(unmasked(x).detach().cpu()),
                 "float32")


def test_mixed_precision_bidirectional_is_refused():
    model = keras.Sequential([keras.Input((5, 3), dtype="float64"), layers.Bidirectional(
        layers.GRU(4, dtype="float64"))])         # the wrapper keeps the float32 policy
    with pytest.raises(NotImplementedError, match="computes in float32 but holds float64"):
        from_keras_model(model)


def test_branching_models_are_refused(rng):
    inputs = keras.Input((STEPS, 3))
    merged = layers.Add()([layers.Dense(4)(inputs), layers.Dense(4)(inputs)])
    with pytest.raises(NotImplementedError, match="linear chain"):
        from_keras_model(keras.Model(inputs, merged))


def test_unbuilt_model_is_refused():
    with pytest.raises(ValueError, match="not built"):
        from_keras_model(keras.Sequential([layers.LSTM(4)]))
