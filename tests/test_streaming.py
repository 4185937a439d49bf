"""Streaming inference: layer.stream(batch_size) steps a layer one time step at a time.

The contract (SPEC "Streaming, persistence and scale-out"): stepping through x[0], x[1], ...
gives exactly layer(x)'s outputs and final states; ``state`` reads (copies) and sets the
states; ``reset(rows)`` zeroes all or some rows; a 1-D x_t works when batch_size == 1;
``step`` returns a fresh array unless ``out=`` is given, and then allocates nothing.
"""

import pickle
import tracemalloc

import numpy as np
import pytest

import fastrnn

from conftest import CELL_BY_NAME, CELLS, DTYPES, assert_close, random_hx, state_shapes

SOME_CELLS = [CELL_BY_NAME[n] for n in ("rnn_relu", "lstm", "lstm_proj", "gru_reset_before")]


def time_major_input(rng, layer, T, B):
    return rng.standard_normal((T, B, layer.input_size)).astype(layer.dtype)


def step_through(stream, x):
    """Step ``stream`` through x[0], x[1], ... (time-major) and stack the outputs."""
    return np.stack([stream.step(x[t]) for t in range(x.shape[0])])


def final_state(layer_result):
    """The state part of a layer call, in the structure stream.state uses."""
    return layer_result[1]


# --------------------------------------------------------------- equivalence

@pytest.mark.parametrize("B", [1, 3, 13])        # 13: past the row steps, the kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_stepping_equals_whole_sequence(cell, num_layers, dtype, B, rng):
    layer = cell.make(5, 8, num_layers=num_layers, dtype=dtype, seed=11)
    x = time_major_input(rng, layer, 9, B)
    expected = layer(x)
    stream = layer.stream(batch_size=B)
    assert stream.batch_size == B
    y = step_through(stream, x)
    assert y.dtype == layer.dtype
    assert_close(y, expected[0], dtype, "y")
    assert_close(stream.state, final_state(expected), dtype, "state")


def random_stream_config(seed):
    r = np.random.default_rng(seed)
    cell = CELLS[r.integers(len(CELLS))]
    H = int(r.integers(2, 17))
    kw = dict(num_layers=int(r.integers(1, 4)), bias=bool(r.integers(2)),
              batch_first=bool(r.integers(2)), dtype=DTYPES[r.integers(2)],
              backend=("auto", "reference")[r.integers(2)], seed=seed)
    layer = cell.make(int(r.integers(1, 10)), H, **kw)
    return layer, int(r.integers(1, 6)), int(r.integers(1, 13))


@pytest.mark.parametrize("seed", range(30))
def test_random_stacked_configurations(seed, rng):
    layer, B, T = random_stream_config(seed)
    x = time_major_input(rng, layer, T, B)
    # The layer sees its own layout; the stream always takes (B, I) rows (for a
    # batch_first layer x[t] below is a non-contiguous view of the caller's array).
    x_layer = x.transpose(1, 0, 2) if layer.batch_first else x
    y_ref, state_ref = layer(x_layer)
    if layer.batch_first:
        y_ref = y_ref.transpose(1, 0, 2)
        x = x_layer.transpose(1, 0, 2)
    stream = layer.stream(B)
    assert_close(step_through(stream, x), y_ref, layer.dtype, f"y {layer!r}")
    assert_close(stream.state, state_ref, layer.dtype, f"state {layer!r}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_set_state_equals_call_with_hx(cell, dtype, rng):
    layer = cell.make(4, 6, num_layers=2, dtype=dtype, seed=5)
    B = 3
    x = time_major_input(rng, layer, 7, B)
    hx = random_hx(rng, layer, B)
    expected = layer(x, hx)
    stream = layer.stream(B)
    stream.state = hx
    assert_close(stream.state, hx, dtype, "state as set")
    assert_close(step_through(stream, x), expected[0], dtype, "y")
    assert_close(stream.state, final_state(expected), dtype, "state")


def test_state_is_zero_initially_with_the_documented_shapes():
    for cell in CELLS:
        layer = cell.make(3, 6, num_layers=2, dtype="float64", seed=0)
        stream = layer.stream(4)
        h_shape, c_shape = state_shapes(layer, 4)
        state = stream.state
        if c_shape is None:
            assert isinstance(state, np.ndarray) and state.shape == h_shape
            assert not state.any()
        else:
            assert isinstance(state, tuple) and len(state) == 2
            assert state[0].shape == h_shape and state[1].shape == c_shape
            assert not state[0].any() and not state[1].any()


def test_state_getter_returns_copies_and_setter_copies_in(rng):
    layer = fastrnn.LSTM(3, 5, num_layers=2, dtype="float64", seed=1)
    stream = layer.stream(2)
    x = time_major_input(rng, layer, 4, 2)
    step_through(stream, x)
    h, c = stream.state
    before = (h.copy(), c.copy())
    h[...] = 123.0
    c[...] = -7.0
    assert_close(stream.state, before, "float64", "state after editing a copy")

    hx = random_hx(rng, layer, 2)
    stream.state = hx
    kept = (hx[0].copy(), hx[1].copy())
    hx[0][...] = 0.0              # the caller's arrays stay the caller's
    hx[1][...] = 0.0
    assert_close(stream.state, kept, "float64", "state after editing the source")


def test_state_accepts_other_real_dtypes_and_lists(rng):
    layer = fastrnn.GRU(3, 4, dtype="float32", seed=2)
    stream = layer.stream(2)
    h64 = rng.standard_normal((1, 2, 4))
    stream.state = h64
    assert stream.state.dtype == np.float32
    np.testing.assert_array_equal(stream.state, h64.astype(np.float32))
    stream.state = h64.tolist()
    np.testing.assert_array_equal(stream.state, h64.astype(np.float32))


def test_float32_stream_takes_float64_and_integer_rows(rng):
    layer = fastrnn.LSTM(3, 4, dtype="float32", seed=3)
    x64 = rng.standard_normal((5, 2, 3))
    a, b = layer.stream(2), layer.stream(2)
    ya = step_through(a, x64)
    yb = step_through(b, x64.astype(np.float32))
    assert ya.dtype == np.float32
    np.testing.assert_array_equal(ya, yb)
    xi = rng.integers(-2, 3, (3, 2, 3))
    c = layer.stream(2)
    assert_close(step_through(c, xi), layer(xi.astype(np.float32))[0], "float32", "int x")


def test_threaded_stream_equals_whole_sequence(rng, default_threads):
    # Large enough for the stream to run a thread team per step: the kernels (with
    # the BLAS guard) for batches > 1 and the projection, batch-1 row steps otherwise.
    fastrnn.set_num_threads(2)
    for layer, B in [(fastrnn.LSTM(384, 384, num_layers=2, dtype="float64", seed=0), 4),
                     (fastrnn.LSTM(320, 400, proj_size=300, num_layers=2,
                                   dtype="float64", seed=1), 2),
                     (fastrnn.GRU(600, 600, num_layers=2, dtype="float64", seed=2), 1),
                     (fastrnn.RNN(1024, 1024, num_layers=2, dtype="float32", seed=3), 1)]:
        stream = layer.stream(B)
        assert stream._threads > 1, "this test must exercise the threaded step"
        x = time_major_input(rng, layer, 4, B)
        expected = layer(x)
        assert_close(step_through(stream, x), expected[0], layer.dtype, f"y {layer!r}")
        assert_close(stream.state, final_state(expected), layer.dtype, f"state {layer!r}")


ROW_STEP_CELLS = {"rnn_tanh", "rnn_relu", "rnn_sigmoid", "lstm", "gru"}


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_small_batches_step_on_the_weights_rows_where_the_cell_allows(cell):
    layer = cell.make(4, 8, seed=0)
    for B in (1, 12):
        assert layer.stream(B)._core.row_steps == (cell.name in ROW_STEP_CELLS)
    assert not layer.stream(13)._core.row_steps


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", [c for c in CELLS if c.name in ROW_STEP_CELLS], ids=str)
def test_row_steps_equal_whole_sequence(cell, dtype, threads, B, rng, default_threads):
    """Row steps on one thread and split over two (odd sizes: the units' split has
    a partial block and the rows a remainder short of a vector-wide block)."""
    fastrnn.set_num_threads(threads)
    layer = cell.make(67, 203, num_layers=2, dtype=dtype, seed=5)
    stream = layer.stream(B)
    assert stream._core.row_steps and stream._threads == threads
    assert not stream._guarded                           # no BLAS in a row step
    x = time_major_input(rng, layer, 7, B)
    expected = layer(x)
    assert_close(step_through(stream, x), expected[0], dtype, "y")
    assert_close(stream.state, final_state(expected), dtype, "state")


def test_row_step_with_out_allocates_nothing(rng, default_threads):
    fastrnn.set_num_threads(2)
    layer = fastrnn.RNN(8, 1024, dtype="float64", seed=3)
    stream = layer.stream(1)
    assert stream._core.row_steps and stream._threads == 2
    x = time_major_input(rng, layer, 1, 1)[0]
    out = np.empty((1, 1024))
    tracemalloc.start()
    try:
        for _ in range(10):
            stream.step(x, out=out)
        grown, peak = _traced_growth(lambda: stream.step(x, out=out), 1000)
        _, fresh_peak = _traced_growth(lambda: stream.step(x), 20)
    finally:
        tracemalloc.stop()
    assert fresh_peak >= out.nbytes
    assert grown < 4 * 1024 and peak < 4 * 1024, (grown, peak)


# --------------------------------------------------------------------- reset

@pytest.mark.parametrize("rows_kind", ["list", "array", "negative", "mask", "scalar"])
@pytest.mark.parametrize("cell", SOME_CELLS, ids=str)
def test_reset_rows_zeroes_only_those_rows(cell, rows_kind, rng):
    B, T, t0 = 4, 8, 3
    layer = cell.make(3, 6, num_layers=2, dtype="float64", seed=7)
    rows, rows_arg = {
        "list": ([1, 3], [1, 3]),
        "array": ([0, 2], np.array([2, 0], np.int32)),
        "negative": ([3], [-1]),
        "mask": ([0, 1], np.array([True, True, False, False])),
        "scalar": ([2], 2),
    }[rows_kind]
    others = [b for b in range(B) if b not in rows]
    x = time_major_input(rng, layer, T, B)
    stream = layer.stream(B)
    y_head = step_through(stream, x[:t0])
    before = stream.state
    stream.reset(rows_arg)
    after = stream.state
    for b_state, a_state in zip(before if isinstance(before, tuple) else (before,),
                                after if isinstance(after, tuple) else (after,)):
        assert not a_state[:, rows].any(), "reset rows must be zero"
        np.testing.assert_array_equal(a_state[:, others], b_state[:, others])
    y_tail = step_through(stream, x[t0:])

    # Untouched rows carry on as if nothing happened ...
    y_full, state_full = layer(x)
    assert_close(np.concatenate([y_head, y_tail])[:, others], y_full[:, others],
                 "float64", "other rows")
    # ... and reset rows start afresh from zero states at step t0.
    y_new, state_new = layer(x[t0:, rows])
    assert_close(y_tail[:, rows], y_new, "float64", "reset rows")
    final = stream.state
    pick = (lambda s, r: tuple(a[:, r] for a in s)) if isinstance(final, tuple) \
        else (lambda s, r: s[:, r])
    assert_close(pick(final, others), pick(state_full, others), "float64", "others state")
    assert_close(pick(final, rows), state_new, "float64", "reset rows state")


@pytest.mark.parametrize("cell", SOME_CELLS, ids=str)
def test_reset_all_rows_restarts_the_stream(cell, rng):
    layer = cell.make(3, 5, num_layers=2, dtype="float64", seed=8)
    x = time_major_input(rng, layer, 6, 2)
    stream = layer.stream(2)
    step_through(stream, x)
    stream.reset()
    state = stream.state
    for s in (state if isinstance(state, tuple) else (state,)):
        assert not s.any()
    expected = layer(x)
    assert_close(step_through(stream, x), expected[0], "float64", "y after reset")
    assert_close(stream.state, final_state(expected), "float64", "state after reset")


def test_reset_with_no_rows_is_a_no_op(rng):
    # A service resets "the users that finished this step": often none of them.
    layer = fastrnn.LSTM(3, 4, dtype="float64", seed=9)
    stream = layer.stream(3)
    step_through(stream, time_major_input(rng, layer, 2, 3))
    before = stream.state
    stream.reset(np.array([], dtype=np.int64))
    stream.reset(np.zeros(3, bool))
    finished = [b for b in range(3) if b > 5]         # an empty Python list
    stream.reset(finished)
    assert_close(stream.state, before, "float64", "state")


@pytest.mark.parametrize("rows", [[3], [-4], 7, [0.5], np.array([1.0]), [[0]], "a",
                                  [True, False], np.array([True, False, True, False])],
                         ids=["past-end", "before-start", "scalar-past-end", "float-list",
                              "float-array", "2-d", "string", "short-mask", "long-mask"])
def test_bad_rows_raise_value_error_and_change_nothing(rows, rng):
    layer = fastrnn.GRU(2, 4, dtype="float64", seed=10)
    stream = layer.stream(3)
    step_through(stream, time_major_input(rng, layer, 2, 3))
    before = stream.state
    with pytest.raises(ValueError):
        stream.reset(rows)
    np.testing.assert_array_equal(stream.state, before)


# ------------------------------------------------------------- out= and fresh

@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("cell", SOME_CELLS, ids=str)
def test_out_is_filled_and_returned(cell, B, rng):
    layer = cell.make(3, 6, num_layers=2, dtype="float32", seed=12)
    x = time_major_input(rng, layer, 5, B)
    expected = layer(x)[0]
    stream = layer.stream(B)
    out = np.full((B, layer.output_size), np.nan, np.float32)
    for t in range(x.shape[0]):
        result = stream.step(x[t], out=out)
        assert result is out
        assert_close(out, expected[t], "float32", f"step {t}")


def test_out_with_one_dimensional_rows(rng):
    layer = fastrnn.GRU(3, 4, dtype="float64", seed=13)
    x = rng.standard_normal((4, 3))
    expected = layer(x)[0]                       # unbatched call: (T, H)
    stream = layer.stream()
    out = np.empty(4)
    for t in range(4):
        assert stream.step(x[t], out=out) is out
        assert_close(out, expected[t], "float64", f"step {t}")


def test_fresh_outputs_are_independent(rng):
    layer = fastrnn.LSTM(3, 4, num_layers=2, dtype="float64", seed=14)
    x = time_major_input(rng, layer, 3, 2)
    stream = layer.stream(2)
    y0 = stream.step(x[0])
    kept = y0.copy()
    y1 = stream.step(x[1])
    assert y1 is not y0 and not np.shares_memory(y0, y1)
    np.testing.assert_array_equal(y0, kept)      # a later step does not write into it
    y0[...] = 99.0                               # the caller owns it: the stream is unaffected
    y2 = stream.step(x[2])
    assert_close(np.stack([kept, y1, y2]), layer(x)[0], "float64", "y")


@pytest.mark.parametrize("make_out", [
    lambda B, P: np.empty((B, P + 1), np.float32),
    lambda B, P: np.empty((B + 1, P), np.float32),
    lambda B, P: np.empty((P, B), np.float32),            # the right size, transposed
    lambda B, P: np.empty(B * P, np.float32),             # the right size, flattened
    lambda B, P: np.empty((B, P, 1), np.float32),
    lambda B, P: np.empty((B, 2 * P), np.float32)[:, ::2],
    lambda B, P: np.empty((B, P), np.float32, order="F"),
], ids=["wide", "tall", "transposed", "flat", "3-d", "strided", "fortran"])
def test_out_of_the_wrong_shape_or_layout_raises(make_out, rng):
    layer = fastrnn.RNN(3, 5, dtype="float32", seed=15)
    B = 2
    stream = layer.stream(B)
    x = time_major_input(rng, layer, 1, B)[0]
    before = stream.state
    with pytest.raises(ValueError):
        stream.step(x, out=make_out(B, layer.output_size))
    np.testing.assert_array_equal(stream.state, before)       # nothing stepped


def test_out_of_the_wrong_dtype_or_read_only_raises(rng):
    layer = fastrnn.RNN(3, 5, dtype="float32", seed=16)
    stream = layer.stream(2)
    x = time_major_input(rng, layer, 1, 2)[0]
    with pytest.raises((TypeError, ValueError)):
        stream.step(x, out=np.empty((2, 5), np.float64))
    ro = np.empty((2, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        stream.step(x, out=ro)
    assert not stream.state.any()


def _traced_growth(fn, n):
    """(growth of current traced memory, growth of its peak) over n calls of fn."""
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(n):
        fn()
    current, peak = tracemalloc.get_traced_memory()
    return current - base, peak - base


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", [CELL_BY_NAME[n] for n in ("lstm_proj", "gru", "rnn_tanh")],
                         ids=str)
def test_step_with_out_allocates_nothing(cell, threads, rng, default_threads):
    fastrnn.set_num_threads(threads)
    # Outputs of >= 32 KiB, from a cheap single-threaded step or a step big
    # enough for a thread team (which also switches the BLAS threads per step).
    B, I, H = (1024, 4, 8) if threads == 1 else (128, 8, 64)
    layer = cell.make(I, H, num_layers=2, dtype="float64", seed=17)
    stream = layer.stream(B)
    assert (stream._threads > 1) == (threads > 1), "the threaded step must be covered too"
    x = time_major_input(rng, layer, 1, B)[0]
    out = np.empty((B, layer.output_size))
    assert out.nbytes >= 32 * 1024        # an allocated output would show up in the peak
    tracemalloc.start()
    try:
        for _ in range(10):               # the first steps may set things up
            stream.step(x, out=out)
        grown, peak = _traced_growth(lambda: stream.step(x, out=out), 1000)
        # The measurement does see a step that allocates its output.
        _, fresh_peak = _traced_growth(lambda: stream.step(x), 20)
    finally:
        tracemalloc.stop()
    assert fresh_peak >= out.nbytes
    assert grown < 10 * 1024, f"{grown} bytes retained over 1000 steps"
    assert peak < 10 * 1024, f"peak grew by {peak} bytes over 1000 steps"


# ------------------------------------------------------------------- 1-D rows

@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_one_dimensional_rows_for_batch_size_one(cell, rng):
    layer = cell.make(4, 6, num_layers=2, dtype="float64", seed=18)
    x = rng.standard_normal((6, 4))
    y_ref, state_ref = layer(x)                  # unbatched: y (T, H_out)
    stream = layer.stream()                      # batch_size=1 by default
    ys = [stream.step(x[t]) for t in range(6)]
    assert all(y.shape == (layer.output_size,) for y in ys)
    assert_close(np.stack(ys), y_ref, "float64", "y")
    state = stream.state                         # states keep their batch axis
    expected = tuple(s[:, None] for s in state_ref) if isinstance(state_ref, tuple) \
        else state_ref[:, None]
    assert_close(state, expected, "float64", "state")
    # 2-D rows of one sequence give the same numbers with a batch axis.
    other = layer.stream()
    assert_close(np.stack([other.step(x[t][None]) for t in range(6)]), y_ref[:, None],
                 "float64", "y 2-D")


# ----------------------------------------------------------------- parameters

@pytest.mark.parametrize("B", [1, 13])                   # row steps and the kernels
@pytest.mark.parametrize("cell", SOME_CELLS, ids=str)
def test_in_place_parameter_updates_are_seen(cell, B, rng):
    layer = cell.make(3, 6, num_layers=2, dtype="float64", seed=19)
    donor = cell.make(3, 6, num_layers=2, dtype="float64", seed=20)
    x = time_major_input(rng, layer, 6, B)

    stream = layer.stream(B)
    layer.load_state_dict(donor.state_dict())     # after the stream was made
    assert_close(step_through(stream, x), donor(x)[0], "float64", "after load_state_dict")

    # Mid-sequence, as an optimiser would: scale every parameter in place.
    t0 = 3
    stream = layer.stream(B)
    y_head = step_through(stream, x[:t0])
    _, state_mid = layer(x[:t0])
    for p in layer.params.values():
        p *= 0.5
    y_tail = step_through(stream, x[t0:])
    y_ref, state_ref = layer(x[t0:], state_mid)
    assert_close(y_head, donor(x[:t0])[0], "float64", "head")
    assert_close(y_tail, y_ref, "float64", "tail with updated weights")
    assert_close(stream.state, state_ref, "float64", "state")


@pytest.mark.parametrize("B", [1, 4, 13])               # row steps and the kernels
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", [CELL_BY_NAME[n] for n in ("lstm", "gru", "rnn_tanh")],
                         ids=str)
def test_out_may_be_the_input_itself(cell, threads, B, rng, default_threads):
    """Two threads: one may write a step's output while the other still reads x."""
    fastrnn.set_num_threads(threads)
    layer = cell.make(256, 256, dtype="float32", seed=3)
    stream = layer.stream(B)
    assert stream._threads == threads
    x = time_major_input(rng, layer, 6, B)
    got = []
    for t in range(x.shape[0]):
        buf = x[t].copy()
        assert stream.step(buf, out=buf) is buf
        got.append(buf)
    assert_close(np.stack(got), layer(x)[0], "float32")


@pytest.mark.parametrize("B", [1, 13])
@pytest.mark.parametrize("dtype", DTYPES)
def test_byte_swapped_input_is_converted_and_output_refused(dtype, B, rng):
    layer = fastrnn.GRU(4, 8, dtype=dtype, seed=0)
    x = time_major_input(rng, layer, 3, B)
    swapped = x.astype(x.dtype.newbyteorder(">" if x.dtype.byteorder != ">" else "<"))
    assert not swapped.dtype.isnative
    assert_close(step_through(layer.stream(B), swapped), layer(x)[0], dtype)
    out = np.zeros((B, 8), swapped.dtype)
    with pytest.raises(ValueError, match="out must be"):
        layer.stream(B).step(x[0], out=out)


@pytest.mark.parametrize("replace, match", [
    (lambda w: np.zeros((1, 1), w.dtype), r"shape \(32, 8\)"),
    (lambda w: w.astype(np.float64), "float64 array"),
    (lambda w: np.asfortranarray(w), "not C-contiguous"),
    (lambda w: w.astype(w.dtype.newbyteorder(">")), "array"),
    (lambda w: w.tolist(), "list"),
], ids=["shape", "dtype", "fortran", "byte_order", "list"])
def test_a_parameter_the_stream_cannot_read_in_place_is_refused(replace, match):
    """``layer(x)`` converts such arrays; a stream would read them raw (a wrong shape
    read out of bounds), so making one raises and names the parameter."""
    layer = fastrnn.LSTM(3, 8, dtype="float32", seed=0)
    layer.params["weight_hh_l0"] = replace(layer.params["weight_hh_l0"])
    with pytest.raises(ValueError, match="weight_hh_l0") as info:
        layer.stream(1)
    assert info.match(match)


# ------------------------------------------------------------------ pickling

@pytest.mark.parametrize("cell", SOME_CELLS, ids=str)
def test_pickled_stream_keeps_its_state(cell, rng):
    layer = cell.make(3, 5, num_layers=2, dtype="float64", seed=21)
    x = time_major_input(rng, layer, 8, 3)
    stream = layer.stream(3)
    step_through(stream, x[:4])
    clone = pickle.loads(pickle.dumps(stream))
    assert clone is not stream and clone.batch_size == 3
    assert clone.layer == layer and clone.layer is not layer
    assert_close(clone.state, stream.state, "float64", "state")
    y_a = step_through(stream, x[4:])
    y_b = step_through(clone, x[4:])
    np.testing.assert_array_equal(y_b, y_a)
    assert_close(clone.state, stream.state, "float64", "final state")
    assert_close(y_b, layer(x)[0][4:], "float64", "y")


def test_pickled_with_its_layer_the_stream_follows_that_layer(rng):
    layer = fastrnn.GRU(3, 4, dtype="float64", seed=22)
    stream = layer.stream(2)
    layer2, stream2 = pickle.loads(pickle.dumps((layer, stream)))
    assert stream2.layer is layer2
    for p in layer2.params.values():
        p *= -1.0
    x = time_major_input(rng, layer, 3, 2)
    assert_close(step_through(stream2, x), layer2(x)[0], "float64", "y")


# --------------------------------------------------------------------- errors

@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_bidirectional_layer_cannot_stream(cell):
    layer = cell.make(3, 4, bidirectional=True, num_layers=2, seed=0)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.stream()
    with pytest.raises(ValueError):
        layer.stream(batch_size=3)


def test_reverse_layer_cannot_stream():
    layer = fastrnn.GRU(3, 4, reverse=True, seed=0)
    with pytest.raises(ValueError):
        layer.stream()


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True, "2", None])
def test_bad_batch_size(batch_size):
    with pytest.raises((TypeError, ValueError)):
        fastrnn.LSTM(3, 4, seed=0).stream(batch_size)


@pytest.mark.parametrize("B,shape", [
    (1, (4,)), (1, (2,)), (1, (1, 4)), (1, (2, 3)), (1, (1, 1, 3)), (1, ()),
    (3, (3,)), (3, (2, 3)), (3, (3, 4)), (3, (3, 3, 1)), (3, (1, 3)),
], ids=lambda v: str(v))
def test_wrong_row_shape_raises_value_error(B, shape):
    layer = fastrnn.LSTM(3, 4, dtype="float64", seed=0)
    stream = layer.stream(B)
    with pytest.raises(ValueError):
        stream.step(np.ones(shape))
    assert not stream.state[0].any()              # nothing stepped


@pytest.mark.parametrize("B,shape", [(1, (4,)), (1, (2,)), (1, (2, 3)), (3, (3,)), (3, (3, 4))],
                         ids=lambda v: str(v))
def test_wrong_row_shape_message_names_x_t_and_the_expected_shape(B, shape):
    stream = fastrnn.LSTM(3, 4, dtype="float64", seed=0).stream(B)
    with pytest.raises(ValueError, match=r"x_t.*\(%d, 3\)" % B):
        stream.step(np.ones(shape))


@pytest.mark.parametrize("bad", [np.ones((1, 3), np.complex128), np.ones(3, np.complex64),
                                 np.array([["a", "b", "c"]]), np.ones((1, 3), object)],
                         ids=["complex", "complex-1d", "strings", "objects"])
def test_non_real_rows_raise_type_error(bad):
    stream = fastrnn.RNN(3, 4, dtype="float64", seed=0).stream()
    with pytest.raises(TypeError):
        stream.step(bad)


@pytest.mark.parametrize("cell", [CELL_BY_NAME[n] for n in ("gru", "lstm", "lstm_proj")],
                         ids=str)
def test_bad_states_raise_and_change_nothing(cell, rng):
    layer = cell.make(3, 6, num_layers=2, dtype="float64", seed=23)
    B = 2
    stream = layer.stream(B)
    step_through(stream, time_major_input(rng, layer, 3, B))
    before = stream.state
    good = random_hx(rng, layer, B)
    if cell.is_lstm:
        h, c = good
        bad_values = [h,                                    # not a pair
                      (h,), (h, c, c),
                      (h[:1], c), (h, c[:, :1]), (h[..., :-1], c),
                      (c, c) if cell.proj else (h, h[:, :, :-1]),
                      (h[:, 0], c[:, 0])]                   # unbatched states
    else:
        bad_values = [good[:1], good[:, :1], good[..., :-1], good[:, 0], good[None]]
    for bad in bad_values:
        with pytest.raises(ValueError):
            stream.state = bad
        assert_close(stream.state, before, "float64", "state after a failed set")
    bad_dtype = (good[0].astype(complex), good[1]) if cell.is_lstm else good.astype(complex)
    with pytest.raises(TypeError):
        stream.state = bad_dtype
    assert_close(stream.state, before, "float64", "state after a failed set")
