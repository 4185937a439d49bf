"""A small training loop: shuffle, batch, forward, loss, backward, clip, step.

``fit`` treats a final ``Dense(activation="softmax")`` with cross-entropy as Keras
does: the loss is computed from the pre-softmax logits (fused and stable), and
the model's output stays a probability at inference.
"""

import numbers
import time

import numpy as np

from fastrnn import losses
from fastrnn.models import Dense
from fastrnn.optim import clip_grad_norm

__all__ = ["fit", "minibatches", "evaluate"]

_LOSSES = {"cross_entropy": losses.cross_entropy, "mse": losses.mse}
_METRICS = {losses.cross_entropy: "accuracy", losses.mse: "mae"}


def minibatches(n_samples, batch_size, rng):
    """Index arrays of the shuffled batches of one epoch: ``rng.permutation(n)``
    cut into runs of ``batch_size`` (the last may be shorter)."""
    order = rng.permutation(n_samples)
    return [order[start:start + batch_size] for start in range(0, n_samples, batch_size)]


def _resolve_loss(loss):
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a function, "
                             f"got {loss!r}")
        loss = _LOSSES[loss]
    if not callable(loss):
        raise TypeError(f"loss must be a name or a function, got {type(loss).__name__}")
    return loss, _METRICS.get(loss)


def _metric(name, out, target, mask):
    """Sum of the metric over the kept elements, and their count."""
    if name == "accuracy":
        hits = np.argmax(out, axis=-1) == np.asarray(target)
        if mask is not None:
            return float(hits[mask].sum()), int(mask.sum())
        return float(hits.sum()), hits.size
    error = np.abs(out - np.asarray(target, out.dtype).reshape(out.shape))
    if mask is not None:
        return float(error[mask].sum()), int(mask.sum()) * out.shape[-1]
    return float(error.sum()), error.size


def _step_mask(out, real):
    """The real-step mask when the output is a sequence, for the loss."""
    if real is None or out.ndim != 3 or out.shape[:2] != real.shape:
        return None
    return real


def _loss_call(loss_fn, out, target, mask):
    return loss_fn(out, target) if mask is None else loss_fn(out, target, mask=mask)


def _uses_logits(model, loss_fn):
    last = model.items[-1] if hasattr(model, "items") else None
    return loss_fn is losses.cross_entropy and isinstance(last, Dense) and \
        last.activation == "softmax"


def _take(array, index):
    return None if array is None else array[index]


def evaluate(model, x, y, *, loss, batch_size=256, lengths=None):
    """``(loss, metric)`` of ``model`` on ``(x, y)`` (metric None for custom losses)."""
    loss_fn, metric = _resolve_loss(loss)
    logits = _uses_logits(model, loss_fn)
    x, y = np.asarray(x), np.asarray(y)
    loss_sum = metric_sum = 0.0
    loss_count = metric_count = 0
    for start in range(0, len(x), batch_size):
        index = slice(start, start + batch_size)
        xb, lb = x[index], _take(lengths, index)
        out = model(xb, lb, logits=logits)
        mask = _step_mask(out, model.real_steps(xb, lb))
        value, _ = _loss_call(loss_fn, out, y[index], mask)
        n = len(xb)
        loss_sum += value * n
        loss_count += n
        if metric:
            total, count = _metric(metric, out, y[index], mask)
            metric_sum += total
            metric_count += count
    return loss_sum / loss_count, (metric_sum / metric_count if metric else None)


def fit(model, x, y, *, loss, optimizer, epochs, batch_size, lengths=None,
        validation_data=None, seed=None, progress=True, clip_norm=None):
    """Train ``model`` on ``(x, y)``; returns the history, a dict of per-epoch lists.

    Each epoch shuffles the samples with ``numpy.random.default_rng(seed)`` (see
    ``minibatches``), and for each batch runs ``forward_train``, the loss,
    ``backward``, ``clip_grad_norm`` (when ``clip_norm`` is given) and
    ``optimizer.step``.  ``loss`` is "cross_entropy", "mse" or a function
    ``(out, target) -> (loss, dloss_dout)``.  ``validation_data`` is ``(x, y)`` or
    ``(x, y, lengths)``.

    History keys: "loss" (the mean of the batch losses of the epoch, weighted by
    batch size, as Keras reports it), the metric ("accuracy" for cross-entropy,
    "mae" for mse), "val_loss" and "val_<metric>" with validation data, and
    "epoch_time" (seconds spent training, validation excluded).  ``progress``
    shows a tqdm bar per epoch (a printed line per epoch without tqdm).
    """
    loss_fn, metric = _resolve_loss(loss)
    logits = _uses_logits(model, loss_fn)
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y hold different numbers of samples: {len(x)} and {len(y)}")
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (len(x),):
            raise ValueError(f"lengths: expected shape ({len(x)},), got {lengths.shape}")
    for name, value, least in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
                value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if len(x) == 0:
        raise ValueError("fit needs at least one training sample, got none")
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError("optimizer must have a step(grads) method (fastrnn.optim.SGD, "
                        f"Adam), got {type(optimizer).__name__}")
    if validation_data is not None and len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be (x, y) or (x, y, lengths)")
    if validation_data is not None and len(validation_data[0]) == 0:
        raise ValueError("validation_data holds no samples")
    rng = np.random.default_rng(seed)
    bar_factory = _progress_factory(progress)
    history = {"loss": []}
    if metric:
        history[metric] = []
    if validation_data is not None:
        history["val_loss"] = []
        if metric:
            history[f"val_{metric}"] = []
    history["epoch_time"] = []

    for epoch in range(int(epochs)):
        batches = minibatches(len(x), int(batch_size), rng)
        bar = bar_factory(total=len(batches), desc=f"epoch {epoch + 1}/{epochs}")
        loss_sum = metric_sum = 0.0
        seen = metric_count = 0
        start = time.perf_counter()
        for index in batches:
            xb, yb, lb = x[index], y[index], _take(lengths, index)
            out, cache = model.forward_train(xb, lb, logits=logits)
            mask = _step_mask(out, cache.real_steps)
            value, d_out = _loss_call(loss_fn, out, yb, mask)
            _, grads = model.backward(cache, d_out)
            if clip_norm is not None:
                clip_grad_norm(grads, clip_norm)
            optimizer.step(grads)
            loss_sum += value * len(index)
            seen += len(index)
            if metric:
                total, count = _metric(metric, out, yb, mask)
                metric_sum += total
                metric_count += count
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
        history["epoch_time"].append(time.perf_counter() - start)
        history["loss"].append(loss_sum / seen)
        if metric:
            history[metric].append(metric_sum / metric_count)
        if validation_data is not None:
            vx, vy = validation_data[:2]
            vl = validation_data[2] if len(validation_data) == 3 else None
            val_loss, val_metric = evaluate(model, vx, vy, loss=loss_fn,
                                            batch_size=max(int(batch_size), 256),
                                            lengths=vl)
            history["val_loss"].append(val_loss)
            if metric:
                history[f"val_{metric}"].append(val_metric)
        summary = {k: v[-1] for k, v in history.items() if k != "epoch_time"}
        if bar is not None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in summary.items()})
            bar.close()
        elif progress:
            print(f"epoch {epoch + 1}/{epochs}: " +
                  ", ".join(f"{k}={v:.4f}" for k, v in summary.items()), flush=True)
    return history


def _progress_factory(progress):
    """tqdm bars when progress is on and tqdm is installed; else a factory of None."""
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return lambda total, desc: tqdm(total=total, desc=desc, leave=True)
    return lambda total, desc: None
