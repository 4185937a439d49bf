"""The kernels' Python entry points check every buffer before C runs.

They take flattened ndarrays (read through the NumPy C API, not memoryviews), so
their own checks are all that stands between a wrong buffer and a crash.
"""

import numpy as np
import pytest

from fastrnn.kernels import gru, lstm, rnn

T, B, I, H = 3, 2, 4, 5


def _lstm_args(dt, **change):
    z = lambda n: np.zeros(n, dt)                      # noqa: E731
    e = np.empty(0, dt)
    args = dict(T=T, B=B, I=I, H=H, P=H, batch_sizes=np.empty(0, np.intp), reverse=False,
                x=np.random.default_rng(0).standard_normal(T * B * I).astype(dt),
                w_ih=np.full(4 * H * I, 0.1, dt), w_hh=np.full(4 * H * H, 0.1, dt),
                b_ih=z(4 * H), b_hh=z(4 * H), w_hr=e, h0=z(B * H), c0=z(B * H),
                y=z(T * B * H), y_col=0, ldy=H, h_n=z(B * H), c_n=z(B * H),
                gates=e, cs=e, c_prevs=e, h_prevs=e, rs=e, num_threads=1)
    args.update(change)
    return list(args.values())


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_a_valid_call_runs_in_its_dtype(dt):
    args = _lstm_args(dt)
    lstm.forward(*args)
    y = args[15]
    assert np.all(np.isfinite(y)) and np.any(y != 0)


@pytest.mark.parametrize("change, error, match", [
    (dict(w_ih=np.zeros(4 * H * I, np.float64)), TypeError, "w_ih: dtype float64"),
    (dict(x=list(range(T * B * I))), TypeError, "x: expected a NumPy array"),
    (dict(w_hh=np.zeros(8 * H * H, np.float32)[::2]), ValueError, "C-contiguous"),
    (dict(w_hh=np.zeros(4 * H * H - 1, np.float32)), ValueError, "w_hh: buffer of"),
    (dict(y=np.zeros(T * B * H - 1, np.float32)), ValueError, "y: buffer of"),
    (dict(ldy=H - 1), ValueError, "does not fit"),
    (dict(h0=np.zeros(B * H - 1, np.float32)), ValueError, "h0: buffer of"),
    (dict(b_ih=np.zeros(3, np.float32)), ValueError, "b_ih: buffer of"),
    (dict(w_hr=np.zeros(H * H, np.float32)), ValueError, "w_hr is given exactly"),
    (dict(batch_sizes=np.array([2, 3, 1], np.intp)), ValueError, "non-increasing"),
    (dict(batch_sizes=np.array([2, 1], np.intp)), ValueError, "batch_sizes has 2"),
    (dict(batch_sizes=np.array([2, 1, 1], np.int8)), TypeError, "batch_sizes: dtype"),
    (dict(gates=np.zeros(1, np.float32)), ValueError, "gates: buffer of"),
    # From a randomized check of direct calls: each of these ran before, writing
    # outside a buffer, crashing, or leaving an output unwritten.
    (dict(y=np.zeros(T * B * H + 1, np.float32)[1:], y_col=-1), ValueError, "column -1"),
    (dict(ldy=2 ** 61 + 1), ValueError, "overflows"),
    (dict(ldy=2 ** 62), ValueError, "overflows"),
    (dict(y_col=2 ** 63 - 1), ValueError, "does not fit"),
    (dict(I=0), ValueError, "need T, I, H, P >= 1"),
    (dict(T=0), ValueError, "need T, I, H, P >= 1"),
    (dict(B=-1, batch_sizes=np.empty(0, np.intp)), ValueError, "B >= 0"),
    (dict(P=H + 1, w_hr=np.zeros(H * (H + 1), np.float32)), ValueError, "P <= H"),
    (dict(batch_sizes=np.array([1, 1, 1], np.intp)), ValueError, r"batch_sizes\[0\] is 1"),
    (dict(w_hh=np.zeros(4 * H * H, ">f4")), ValueError, "native byte order"),
    (dict(x=np.zeros(T * B * I, np.int64)), TypeError, "x: dtype int64"),
])
def test_a_wrong_buffer_raises(change, error, match):
    with pytest.raises(error, match=match):
        lstm.forward(*_lstm_args(np.float32, **change))


def test_a_read_only_output_is_refused():
    y = np.zeros(T * B * H, np.float32)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="y: the kernel writes into a read-only"):
        lstm.forward(*_lstm_args(np.float32, y=y))


def test_an_unknown_nonlinearity_is_a_value_error():
    f = np.float32
    e = np.empty(0, f)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        rnn.forward(T, B, I, H, np.empty(0, np.intp), False, "foo", np.zeros(T * B * I, f),
                    np.zeros(H * I, f), np.zeros(H * H, f), e, e, e, np.zeros(T * B * H, f),
                    0, H, np.zeros(B * H, f), e, e, 1)


def test_gru_and_rnn_check_their_buffers():
    f = np.float32
    e = np.empty(0, f)
    sizes = np.empty(0, np.intp)
    x = np.zeros(T * B * I, f)
    with pytest.raises(ValueError, match="w_hh: buffer of"):
        gru.forward(T, B, I, H, sizes, False, True, x, np.zeros(3 * H * I, f),
                    np.zeros(3 * H * H - 1, f), e, e, e, np.zeros(T * B * H, f), 0, H,
                    np.zeros(B * H, f), e, e, e, 1)
    with pytest.raises(TypeError, match="h_n: dtype float64"):
        rnn.forward(T, B, I, H, sizes, False, "tanh", x, np.zeros(H * I, f),
                    np.zeros(H * H, f), e, e, e, np.zeros(T * B * H, f), 0, H,
                    np.zeros(B * H, np.float64), e, e, 1)
