"""Losses with their gradients: each returns ``(loss, dloss_dinput)``.

Both take the mean over the batch (and the steps, for per-step outputs), as
``torch.nn.functional.cross_entropy`` / ``mse_loss`` with ``reduction="mean"`` do.
``mask`` (optional, boolean, the labels' shape, e.g. (B, T)) keeps only the True
elements in the mean: padded steps of a sequence output.
"""

import numpy as np

from fastrnn._config import get_num_threads
from fastrnn._scratch import POOL
from fastrnn._train_ops import softmax_cross_entropy

__all__ = ["cross_entropy", "mse"]

# Logits from which the loss splits its rows over fastrnn's threads.
_PARALLEL_ELEMENTS = 1 << 16


def _float_array(value, name):
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def _check_mask(mask, shape):
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask: expected shape {tuple(shape)}, got {mask.shape}")
    return mask


def cross_entropy(logits, labels, mask=None):
    """Softmax cross-entropy from logits with integer labels.

    ``loss = mean_i [ logsumexp(z_i) - z_i[y_i] ]`` over the rows i kept by ``mask``;
    ``dloss/dz_i = (softmax(z_i) - onehot(y_i)) / N`` (zero for masked rows).
    ``logits`` is (B, C) with ``labels`` (B,), or (B, T, C) with ``labels`` (B, T).
    The log-sum-exp subtracts each row's maximum, so large logits do not overflow.
    """
    z = _float_array(logits, "logits")
    if z.ndim < 2:
        raise ValueError(f"logits: expected (B, C) or (B, T, C), got shape {z.shape}")
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.intp)
        else:
            raise TypeError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.shape != z.shape[:-1]:
        raise ValueError(f"labels: expected shape {z.shape[:-1]} for logits of shape "
                         f"{z.shape}, got {y.shape}")
    classes = z.shape[-1]
    mask = _check_mask(mask, y.shape)
    if y.size and (y.min() < 0 or y.max() >= classes):
        bad = y[(y < 0) | (y >= classes)]
        if mask is None or np.any(mask[(y < 0) | (y >= classes)]):
            raise ValueError(f"labels must lie in 0..{classes - 1}, got {bad.flat[0]}")
        y = np.where(mask, y, 0)
    count = y.size if mask is None else int(mask.sum())
    # One fused pass per row (fastrnn/kernels/_train_ops.h), on C-ordered rows.
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    rows = np.ascontiguousarray(z.reshape(-1, classes))
    grad = POOL.lend(rows.shape, rows.dtype)
    keep = None if mask is None else np.ascontiguousarray(mask.reshape(-1)).view(np.uint8)
    threads = get_num_threads() if rows.size >= _PARALLEL_ELEMENTS else 1
    total = softmax_cross_entropy(rows, np.ascontiguousarray(y.reshape(-1), dtype=np.intp),
                                  keep, grad, 1.0 / max(count, 1), threads)
    loss = total / count if count else float("nan")
    return float(loss), grad.reshape(z.shape)


def mse(pred, target, mask=None):
    """Mean squared error: ``loss = mean (pred - target)^2``, ``dloss/dpred = 2 (pred -
    target) / N`` over the N kept elements.

    ``target`` has ``pred``'s shape, or lacks its last axis when that axis has size 1
    (a ``Dense(1)`` output against targets of shape (B,), as Keras accepts).  ``mask``
    has ``pred``'s leading shape without the feature axis (e.g. (B, T)).
    """
    p = _float_array(pred, "pred")
    t = _float_array(target, "target").astype(p.dtype, copy=False)
    if t.shape != p.shape:
        if p.shape[-1:] == (1,) and t.shape == p.shape[:-1]:
            t = t[..., None]
        else:
            raise ValueError(f"target: expected shape {p.shape}, got {t.shape}")
    diff = p - t
    mask = _check_mask(mask, p.shape[:-1]) if mask is not None else None
    if mask is not None:
        # Selected, not multiplied: a NaN target at a dropped step must stay dropped.
        diff = np.where(mask[..., None], diff, diff.dtype.type(0))
        count = int(mask.sum()) * p.shape[-1]
    else:
        count = diff.size
    loss = float(np.sum(diff * diff) / count) if count else float("nan")
    return loss, diff * (2 / max(count, 1))
