"""Optimisers with torch's update formulas, updating parameter arrays in place.

``opt = Adam(model.params, lr=1e-3)`` keeps references to the live arrays;
``opt.step(grads)`` updates those named in ``grads`` (a parameter without a
gradient is left alone, as torch skips parameters whose ``.grad`` is None).
"""

import math
import numbers

import numpy as np

from fastrnn._config import get_num_threads
from fastrnn._train_ops import adam

__all__ = ["SGD", "Adam", "clip_grad_norm"]

# Elements from which an update splits over fastrnn's threads.
_PARALLEL_ELEMENTS = 1 << 16


def _check_hyper(value, name, minimum=0.0, below=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value < minimum or \
            (below is not None and value >= below):
        bound = f"in [{minimum}, {below})" if below is not None else f">= {minimum}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


class Optimizer:
    """Shared parts: the parameter dict, gradient checks, per-parameter state."""

    def __init__(self, params):
        if not hasattr(params, "items"):
            raise TypeError("params must be a dict of names to arrays (e.g. model.params)")
        self.params = dict(params)
        for name, value in self.params.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise TypeError(f"params[{name!r}] must be a floating-point NumPy array")
            if not value.flags.writeable:
                raise ValueError(f"params[{name!r}] is read-only; optimisers update in place")
        self.state = {}

    def _gradients(self, grads):
        """(name, param, grad) for each gradient, checked against its parameter."""
        for name, grad in grads.items():
            if name not in self.params:
                raise KeyError(f"gradient {name!r} has no parameter in this optimiser")
            param = self.params[name]
            if hasattr(grad, "detach") and hasattr(grad, "numpy"):
                grad = grad.detach().cpu().numpy()
            grad = np.asarray(grad)
            if grad.shape != param.shape:
                raise ValueError(f"gradient {name!r}: expected shape {param.shape}, "
                                 f"got {grad.shape}")
            yield name, param, grad.astype(param.dtype, copy=False)

    def step(self, grads):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, torch.optim.SGD::

        g = grad + weight_decay * p
        buf = g  (first step),  buf = momentum * buf + (1 - dampening) * g  (after)
        g = g + momentum * buf  (nesterov)  or  g = buf  (momentum > 0)
        p = p - lr * g
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                 dampening=0.0):
        super().__init__(params)
        self.lr = _check_hyper(lr, "lr")
        self.momentum = _check_hyper(momentum, "momentum")
        self.dampening = _check_hyper(dampening, "dampening")
        self.weight_decay = _check_hyper(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")

    def step(self, grads):
        for name, param, grad in self._gradients(grads):
            d_p = grad + self.weight_decay * param if self.weight_decay else grad
            if self.momentum:
                buf = self.state.get(name)
                if buf is None:
                    buf = self.state[name] = d_p.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * d_p
                d_p = d_p + self.momentum * buf if self.nesterov else buf
            param -= self.lr * d_p


class Adam(Optimizer):
    """Adam, torch.optim.Adam (weight_decay is an L2 term added to the gradient)::

        g = grad + weight_decay * p
        m = m + (1 - beta1) * (g - m)            (torch's lerp)
        v = beta2 * v + (1 - beta2) * g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    with t counting each parameter's own steps.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr = _check_hyper(lr, "lr")
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        self.betas = (_check_hyper(betas[0], "betas[0]", below=1.0),
                      _check_hyper(betas[1], "betas[1]", below=1.0))
        self.eps = _check_hyper(eps, "eps")
        self.weight_decay = _check_hyper(weight_decay, "weight_decay")

    def step(self, grads):
        beta1, beta2 = self.betas
        for name, param, grad in self._gradients(grads):
            # One fused pass (fastrnn/kernels/_train_ops.h) in float32 or float64, on
            # a C-ordered copy where the parameter is not C-ordered (or float16, say).
            work = param.dtype if param.dtype in (np.float32, np.float64) else np.float64
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = {"step": 0, "m": np.zeros(param.shape, work),
                                            "v": np.zeros(param.shape, work)}
            state["step"] += 1
            t = state["step"]
            flat = np.ascontiguousarray(param, dtype=work)
            threads = get_num_threads() if param.size >= _PARALLEL_ELEMENTS else 1
            adam(flat.reshape(-1), np.ascontiguousarray(grad, dtype=work).reshape(-1),
                 state["m"].reshape(-1), state["v"].reshape(-1), beta1, beta2,
                 self.lr / (1 - beta1 ** t), math.sqrt(1 - beta2 ** t), self.eps,
                 self.weight_decay, threads)
            if flat is not param:
                param[...] = flat


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """Scale ``grads`` in place so their joint norm is at most ``max_norm``; return the
    norm before clipping (torch.nn.utils.clip_grad_norm_)::

        total = || (||g_1||, ..., ||g_k||) ||        (norm_type 2, or inf: max |g|)
        g_i = g_i * min(1, max_norm / (total + 1e-6))
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or \
            not max_norm >= 0:
        raise ValueError(f"max_norm must be a number >= 0 (inf allowed), got {max_norm!r}")
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not hasattr(grads, "values"):
        raise TypeError(f"grads must map names to gradient arrays, got {type(grads).__name__}")
    arrays = list(grads.values())
    for g in arrays:
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError("clip_grad_norm scales gradients in place: each must be a "
                            f"floating-point ndarray, got {_describe(g)}")
    if not arrays:
        return 0.0
    if norm_type == math.inf:
        norms = [np.max(np.abs(g), initial=0.0) for g in arrays]
        total = float(max(norms))
    elif norm_type > 0:
        norms = [np.sum(np.abs(g.astype(np.float64)) ** norm_type) ** (1 / norm_type)
                 for g in arrays]
        total = float(np.sum(np.asarray(norms) ** norm_type) ** (1 / norm_type))
    else:
        raise ValueError(f"norm_type must be positive or inf, got {norm_type}")
    coef = max_norm / (total + 1e-6)
    if not coef < 1.0 and not math.isnan(coef):
        return total
    for g in arrays:          # a NaN norm makes every gradient NaN, as in torch
        g *= g.dtype.type(coef)
    return total


def _describe(value):
    return (f"a {value.dtype} array" if isinstance(value, np.ndarray)
            else type(value).__name__)
