"""Plain NumPy reference of the recurrent cells, forward and backward.

This module is the readable statement of the maths that the compiled kernels are
checked against.  Each function runs one cell over one direction of a padded
sequence, formula for formula, with no cleverness.  Shapes:

    x      (T, B, I)      input sequence, time-major
    mask   (T, B) bool    True where step t of sequence b is real (from ``lengths``)
    h0     (B, H_out)     initial hidden state (H_out = proj_size or hidden_size)
    c0     (B, H)         initial cell state (LSTM only)
    w_ih   (G*H, I)       input weights, gates stacked in torch's order
    w_hh   (G*H, H_out)   recurrent weights
    b_ih, b_hh (G*H,)     biases, or None
    w_hr   (H_out, H)     LSTM projection (proj_size > 0), or None

Masked (padded) steps are not computed: the state is carried through unchanged,
the output is 0, and no gradient flows through them.  With ``reverse=True`` the
sequence is read from its end, so each sequence starts at its own last real step.

Every ``*_forward`` returns ``(y, h_n[, c_n], cache)`` and every ``*_backward``
takes that cache and returns ``(dx, dh0[, dc0], grads)`` with ``grads`` keyed
``w_ih, w_hh, b_ih, b_hh[, w_hr]``.
"""

import numpy as np

__all__ = [
    "sigmoid", "activation", "activation_grad",
    "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]


def sigmoid(v):
    """sigma(v) = 1 / (1 + exp(-v)), without overflow warnings for large |v|."""
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def activation(name, v):
    """The RNN nonlinearity ``name`` applied to ``v``."""
    if name == "tanh":
        return np.tanh(v)
    if name == "relu":
        return np.maximum(v, 0)
    if name == "sigmoid":
        return sigmoid(v)
    raise ValueError(f"unknown nonlinearity {name!r}")


def activation_grad(name, a):
    """d act(v) / dv written in terms of the activation's output a = act(v)."""
    if name == "tanh":
        return 1 - a * a
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "sigmoid":
        return a * (1 - a)
    raise ValueError(f"unknown nonlinearity {name!r}")


def _steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def _bias(b, n, dtype):
    return np.zeros(n, dtype) if b is None else b


def _bias_grads(grads, db_ih, db_hh, has_bias):
    if has_bias:
        grads["b_ih"] = db_ih
        grads["b_hh"] = db_hh
    return grads


# --------------------------------------------------------------------------- RNN

def rnn_forward(x, mask, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False):
    """Elman RNN:  h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    T, B, _ = x.shape
    H = w_hh.shape[0]
    b_ih_, b_hh_ = _bias(b_ih, H, x.dtype), _bias(b_hh, H, x.dtype)
    y = np.zeros((T, B, H), x.dtype)
    hs = np.zeros((T, B, H), x.dtype)       # h_t where computed
    h_prevs = np.zeros((T, B, H), x.dtype)  # h_{t-1} seen by step t
    h = h0.copy()
    for t in _steps(T, reverse):
        m = mask[t][:, None]
        h_new = activation(nonlinearity, x[t] @ w_ih.T + b_ih_ + h @ w_hh.T + b_hh_)
        h_prevs[t] = h
        hs[t] = h_new
        y[t] = np.where(m, h_new, 0)
        h = np.where(m, h_new, h)
    cache = dict(x=x, mask=mask, h_prevs=h_prevs, hs=hs, w_ih=w_ih, w_hh=w_hh,
                 has_bias=b_ih is not None, nonlinearity=nonlinearity, reverse=reverse)
    return y, h, cache


def rnn_backward(cache, dy, dh_n):
    """BPTT of :func:`rnn_forward`:  da_t = (dy_t + dh_t) * act'(a_t),
    dW_ih += da_t^T x_t,  dW_hh += da_t^T h_{t-1},  dh_{t-1} = da_t W_hh."""
    x, mask, w_ih, w_hh = cache["x"], cache["mask"], cache["w_ih"], cache["w_hh"]
    T = x.shape[0]
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(w_hh.shape[0], x.dtype)
    dh = dh_n.copy()
    for t in _steps(T, not cache["reverse"]):
        m = mask[t][:, None]
        dh_total = dh + dy[t]
        da = np.where(m, dh_total * activation_grad(cache["nonlinearity"], cache["hs"][t]), 0)
        dx[t] = da @ w_ih
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ cache["h_prevs"][t]
        db += da.sum(0)
        dh = np.where(m, da @ w_hh, dh)
    grads = _bias_grads(dict(w_ih=dw_ih, w_hh=dw_hh), db, db.copy(), cache["has_bias"])
    return dx, dh, grads


# -------------------------------------------------------------------------- LSTM

def lstm_forward(x, mask, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None, reverse=False):
    """LSTM, gates in torch's order i, f, g, o:

        i = sigma(W_ii x + b_ii + W_hi h + b_hi)
        f = sigma(W_if x + b_if + W_hf h + b_hf)
        g =  tanh(W_ig x + b_ig + W_hg h + b_hg)
        o = sigma(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g
        h' = o * tanh(c')                 (without projection)
        h' = W_hr (o * tanh(c'))          (with projection, torch's LSTMP)
    """
    T, B, _ = x.shape
    H = w_ih.shape[0] // 4
    H_out = h0.shape[1]
    b_ih_, b_hh_ = _bias(b_ih, 4 * H, x.dtype), _bias(b_hh, 4 * H, x.dtype)
    y = np.zeros((T, B, H_out), x.dtype)
    gates = np.zeros((T, B, 4 * H), x.dtype)   # post-activation i, f, g, o
    cs = np.zeros((T, B, H), x.dtype)          # c_t
    c_prevs = np.zeros((T, B, H), x.dtype)     # c_{t-1}
    h_prevs = np.zeros((T, B, H_out), x.dtype)
    rs = np.zeros((T, B, H), x.dtype)          # o * tanh(c_t), before the projection
    h, c = h0.copy(), c0.copy()
    for t in _steps(T, reverse):
        m = mask[t][:, None]
        a = x[t] @ w_ih.T + b_ih_ + h @ w_hh.T + b_hh_
        i = sigmoid(a[:, 0 * H:1 * H])
        f = sigmoid(a[:, 1 * H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:4 * H])
        c_new = f * c + i * g
        r = o * np.tanh(c_new)
        h_new = r if w_hr is None else r @ w_hr.T
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        cs[t], c_prevs[t], h_prevs[t], rs[t] = c_new, c, h, r
        y[t] = np.where(m, h_new, 0)
        h = np.where(m, h_new, h)
        c = np.where(m, c_new, c)
    cache = dict(x=x, mask=mask, gates=gates, cs=cs, c_prevs=c_prevs, h_prevs=h_prevs,
                 rs=rs, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, has_bias=b_ih is not None,
                 reverse=reverse)
    return y, h, c, cache


def lstm_backward(cache, dy, dh_n, dc_n):
    """BPTT of :func:`lstm_forward`.  With dh the gradient reaching h_t:

        dr = dh (or dh W_hr with projection),   dW_hr += dh^T r
        do = dr * tanh(c_t)
        dc = dc_next + dr * o * (1 - tanh(c_t)^2)
        di = dc * g,  df = dc * c_{t-1},  dg = dc * i,  dc_{t-1} = dc * f
        da = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]
        dx_t = da W_ih,  dh_{t-1} = da W_hh,  dW_ih += da^T x_t,  dW_hh += da^T h_{t-1}
    """
    x, mask, w_ih, w_hh, w_hr = (cache[k] for k in ("x", "mask", "w_ih", "w_hh", "w_hr"))
    T = x.shape[0]
    H = w_ih.shape[0] // 4
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    db = np.zeros(4 * H, x.dtype)
    dh, dc = dh_n.copy(), dc_n.copy()
    for t in _steps(T, not cache["reverse"]):
        m = mask[t][:, None]
        gates = cache["gates"][t]
        i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
        c_t, c_prev = cache["cs"][t], cache["c_prevs"][t]
        dh_total = np.where(m, dh + dy[t], 0)
        if w_hr is None:
            dr = dh_total
        else:
            dr = dh_total @ w_hr
            dw_hr += dh_total.T @ cache["rs"][t]
        tanh_c = np.tanh(c_t)
        do = dr * tanh_c
        dc_total = np.where(m, dc, 0) + dr * o * (1 - tanh_c * tanh_c)
        di, df, dg = dc_total * g, dc_total * c_prev, dc_total * i
        da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g),
                             do * o * (1 - o)], axis=1)
        dx[t] = da @ w_ih
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ cache["h_prevs"][t]
        db += da.sum(0)
        dh = np.where(m, da @ w_hh, dh)
        dc = np.where(m, dc_total * f, dc)
    grads = _bias_grads(dict(w_ih=dw_ih, w_hh=dw_hh), db, db.copy(), cache["has_bias"])
    if w_hr is not None:
        grads["w_hr"] = dw_hr
    return dx, dh, dc, grads


# --------------------------------------------------------------------------- GRU

def gru_forward(x, mask, h0, w_ih, w_hh, b_ih, b_hh, reset_after=True, reverse=False):
    """GRU, gates in torch's order r, z, n:

        r = sigma(W_ir x + b_ir + W_hr h + b_hr)
        z = sigma(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))      reset_after=True (torch, cuDNN)
        n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)      reset_after=False (Cho et al.)
        h' = (1 - z) * n + z * h
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    b_ih_, b_hh_ = _bias(b_ih, 3 * H, x.dtype), _bias(b_hh, 3 * H, x.dtype)
    w_hrz, w_hn = w_hh[:2 * H], w_hh[2 * H:]
    y = np.zeros((T, B, H), x.dtype)
    gates = np.zeros((T, B, 3 * H), x.dtype)   # post-activation r, z, n
    hns = np.zeros((T, B, H), x.dtype)         # W_hn h + b_hn (reset_after) or r * h (not)
    h_prevs = np.zeros((T, B, H), x.dtype)
    h = h0.copy()
    for t in _steps(T, reverse):
        m = mask[t][:, None]
        ax = x[t] @ w_ih.T + b_ih_
        a_rz = ax[:, :2 * H] + h @ w_hrz.T + b_hh_[:2 * H]
        r = sigmoid(a_rz[:, :H])
        z = sigmoid(a_rz[:, H:])
        if reset_after:
            hn = h @ w_hn.T + b_hh_[2 * H:]
            n = np.tanh(ax[:, 2 * H:] + r * hn)
        else:
            hn = r * h
            n = np.tanh(ax[:, 2 * H:] + hn @ w_hn.T + b_hh_[2 * H:])
        h_new = (1 - z) * n + z * h
        gates[t] = np.concatenate([r, z, n], axis=1)
        hns[t], h_prevs[t] = hn, h
        y[t] = np.where(m, h_new, 0)
        h = np.where(m, h_new, h)
    cache = dict(x=x, mask=mask, gates=gates, hns=hns, h_prevs=h_prevs, w_ih=w_ih,
                 w_hh=w_hh, has_bias=b_ih is not None, reset_after=reset_after,
                 reverse=reverse)
    return y, h, cache


def gru_backward(cache, dy, dh_n):
    """BPTT of :func:`gru_forward`.  With dh the gradient reaching h_t:

        dn = dh (1 - z),  dz = dh (h_{t-1} - n),  dh_{t-1} = dh z + ...
        dan = dn (1 - n^2),  daz = dz z (1 - z)
        reset_after:  dr = dan * (W_hn h + b_hn),  d(W_hn h + b_hn) = dan * r
        otherwise:    d(r h) = dan W_hn,  dr = d(r h) * h,  dh_{t-1} += d(r h) * r
        dar = dr r (1 - r)
    """
    x, mask, w_ih, w_hh = cache["x"], cache["mask"], cache["w_ih"], cache["w_hh"]
    reset_after = cache["reset_after"]
    T = x.shape[0]
    H = w_hh.shape[1]
    w_hrz, w_hn = w_hh[:2 * H], w_hh[2 * H:]
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(3 * H, x.dtype), np.zeros(3 * H, x.dtype)
    dh = dh_n.copy()
    for t in _steps(T, not cache["reverse"]):
        m = mask[t][:, None]
        gates = cache["gates"][t]
        r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
        h_prev, hn = cache["h_prevs"][t], cache["hns"][t]
        dh_total = np.where(m, dh + dy[t], 0)
        dn = dh_total * (1 - z)
        dz = dh_total * (h_prev - n)
        dh_prev = dh_total * z
        dan = dn * (1 - n * n)
        daz = dz * z * (1 - z)
        if reset_after:
            dr = dan * hn
            dahn = dan * r                     # gradient of W_hn h + b_hn
            dw_hh[2 * H:] += dahn.T @ h_prev
            dh_prev += dahn @ w_hn
        else:
            drh = dan @ w_hn                   # gradient of r * h
            dr = drh * h_prev
            dahn = dan
            dw_hh[2 * H:] += dan.T @ hn
            dh_prev += drh * r
        dar = dr * r * (1 - r)
        da_rz = np.concatenate([dar, daz], axis=1)
        da_x = np.concatenate([dar, daz, dan], axis=1)
        dx[t] = da_x @ w_ih
        dw_ih += da_x.T @ x[t]
        dw_hh[:2 * H] += da_rz.T @ h_prev
        dh_prev += da_rz @ w_hrz
        db_ih += da_x.sum(0)
        db_hh += np.concatenate([dar, daz, dahn], axis=1).sum(0)
        dh = np.where(m, dh_prev, dh)
    grads = _bias_grads(dict(w_ih=dw_ih, w_hh=dw_hh), db_ih, db_hh, cache["has_bias"])
    return dx, dh, grads
