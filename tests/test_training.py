"""fastrnn.fit: the same updates as a hand-written loop and as torch, the fused
softmax + cross-entropy path, masks for per-step targets, and the history."""

import numpy as np
import pytest

import fastrnn
from fastrnn import losses
from fastrnn.models import Dense, Embedding, FinalState, Sequential
from fastrnn.optim import SGD, Adam, clip_grad_norm
from fastrnn.training import minibatches

from conftest import assert_close


def classifier(activation="softmax", dtype="float64", seed=0):
    return Sequential([Embedding(12, 4, dtype=dtype, seed=seed),
                       fastrnn.GRU(4, 6, batch_first=True, dtype=dtype, seed=seed + 1),
                       FinalState(),
                       Dense(6, 3, activation=activation, dtype=dtype, seed=seed + 2)])


def token_data(rng, n=40, T=6):
    x = rng.integers(0, 12, (n, T))
    return x, x[:, 0] % 3, rng.integers(1, T + 1, n)


def test_fit_equals_a_hand_written_loop(rng):
    x, y, lengths = token_data(rng)
    model, manual = classifier(), classifier()
    history = fastrnn.fit(model, x, y, loss="cross_entropy", optimizer=Adam(model.params, 0.01),
                          epochs=2, batch_size=16, lengths=lengths, seed=3, progress=False,
                          clip_norm=0.5)
    opt = Adam(manual.params, 0.01)
    batch_rng = np.random.default_rng(3)
    epoch_losses = []
    for _ in range(2):
        total = 0.0
        for index in minibatches(len(x), 16, batch_rng):
            logits, cache = manual.forward_train(x[index], lengths[index], logits=True)
            value, d_logits = losses.cross_entropy(logits, y[index])
            _, grads = manual.backward(cache, d_logits)
            clip_grad_norm(grads, 0.5)
            opt.step(grads)
            total += value * len(index)
        epoch_losses.append(total / len(x))
    assert_close(model.state_dict(), manual.state_dict(), "float64", tol=0)
    np.testing.assert_allclose(history["loss"], epoch_losses, rtol=1e-15)


def test_softmax_output_trains_from_its_logits(rng):
    """A final Dense(softmax) with cross-entropy trains exactly like the same model
    ending in logits (Keras' fused path); its output stays a probability."""
    x, y, _ = token_data(rng)
    soft, plain = classifier("softmax"), classifier(None)
    for model in (soft, plain):
        fastrnn.fit(model, x, y, loss=losses.cross_entropy,
                    optimizer=SGD(model.params, 0.5, momentum=0.9), epochs=3,
                    batch_size=8, seed=0, progress=False)
    assert_close(soft.state_dict(), plain.state_dict(), "float64", tol=0)
    probabilities = soft(x)
    np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-14)
    np.testing.assert_allclose(np.log(probabilities), plain(x) - np.log(
        np.exp(plain(x)).sum(-1, keepdims=True)), rtol=1e-12)


def test_fit_matches_torch_adam(rng):
    torch = pytest.importorskip("torch")
    x, y, lengths = token_data(rng)
    model = classifier("softmax")
    twin = model.to_torch()
    fastrnn.fit(model, x, y, loss="cross_entropy", optimizer=Adam(model.params, 0.02),
                epochs=2, batch_size=16, lengths=lengths, seed=1, progress=False)
    opt = torch.optim.Adam(twin.parameters(), lr=0.02)
    batch_rng = np.random.default_rng(1)
    for _ in range(2):
        for index in minibatches(len(x), 16, batch_rng):
            logits = twin(torch.from_numpy(x[index]), torch.from_numpy(lengths[index]),
                          logits=True)
            value = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[index]))
            opt.zero_grad()
            value.backward()
            opt.step()
    assert_close(model.state_dict(),
                 {k: v.detach().numpy() for k, v in twin.state_dict().items()}, "float64",
                 tol=1e-10)


def test_per_step_targets_ignore_padded_steps(rng):
    model = Sequential([Embedding(12, 4, dtype="float64", seed=0),
                        fastrnn.LSTM(4, 5, batch_first=True, dtype="float64", seed=1),
                        Dense(5, 12, dtype="float64", seed=2)])
    x, _, lengths = token_data(rng, n=8)
    y = rng.integers(0, 12, x.shape)
    junk = y.copy()
    junk[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 11   # differs at padding
    states = []
    for targets in (y, junk):
        trained = Sequential([Embedding(12, 4, dtype="float64", seed=0),
                              fastrnn.LSTM(4, 5, batch_first=True, dtype="float64", seed=1),
                              Dense(5, 12, dtype="float64", seed=2)])
        fastrnn.fit(trained, x, targets, loss="cross_entropy",
                    optimizer=Adam(trained.params, 0.01), epochs=1, batch_size=4,
                    lengths=lengths, seed=0, progress=False)
        states.append(trained.state_dict())
    assert_close(states[0], states[1], "float64", tol=0)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(states[0].values(), model.state_dict().values()))


def test_history_and_learning(rng, capsys):
    x = rng.standard_normal((64, 5, 1)).astype(np.float32)
    y = x.sum(axis=(1, 2)) * 0.3                       # a sum over steps: learnable
    model = Sequential([fastrnn.RNN(1, 8, batch_first=True, seed=0), FinalState(),
                        Dense(8, 1, seed=1)])
    history = fastrnn.fit(model, x[:48], y[:48], loss="mse",
                          optimizer=Adam(model.params, 0.02), epochs=15, batch_size=8,
                          validation_data=(x[48:], y[48:]), seed=0, progress=False)
    assert set(history) == {"loss", "mae", "val_loss", "val_mae", "epoch_time"}
    assert all(len(v) == 15 for v in history.values())
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert history["val_loss"][-1] < 0.2 * history["val_loss"][0]
    assert capsys.readouterr().out == ""


def test_fit_errors(rng):
    model = classifier()
    x, y, _ = token_data(rng)
    opt = Adam(model.params)
    with pytest.raises(ValueError, match="different numbers"):
        fastrnn.fit(model, x, y[:-1], loss="cross_entropy", optimizer=opt, epochs=1,
                    batch_size=4, progress=False)
    with pytest.raises(ValueError, match="loss must be one of"):
        fastrnn.fit(model, x, y, loss="hinge", optimizer=opt, epochs=1, batch_size=4,
                    progress=False)
    with pytest.raises(ValueError, match="validation_data"):
        fastrnn.fit(model, x, y, loss="mse", optimizer=opt, epochs=1, batch_size=4,
                    validation_data=(x,), progress=False)


@pytest.mark.parametrize("change, exc, match", [
    (dict(epochs=1.7), ValueError, "epochs must be an integer"),
    (dict(epochs=-1), ValueError, "epochs must be an integer >= 0"),
    (dict(batch_size=2.5), ValueError, "batch_size must be an integer >= 1"),
    (dict(batch_size=True), ValueError, "batch_size"),
    (dict(optimizer=None), TypeError, "step"),
    (dict(empty=True), ValueError, "at least one training sample"),
    (dict(validation_data="empty"), ValueError, "validation_data holds no samples"),
], ids=["float_epochs", "negative_epochs", "float_batch", "bool_batch", "no_optimizer",
        "no_data", "no_validation_data"])
def test_fit_refuses_bad_arguments_before_training(change, exc, match, rng):
    model = classifier()
    x, y, _ = token_data(rng)
    before = model.state_dict()
    kwargs = dict(loss="cross_entropy", optimizer=Adam(model.params), epochs=1,
                  batch_size=4, progress=False)
    kwargs.update({k: v for k, v in change.items() if k != "empty"})
    if change.get("empty"):
        x, y = x[:0], y[:0]
    if kwargs.get("validation_data") == "empty":
        kwargs["validation_data"] = (x[:0], y[:0])
    with pytest.raises(exc, match=match):
        fastrnn.fit(model, x, y, **kwargs)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
