"""The compiled kernels (backend="auto") against the NumPy reference, same weights.

Both layers are built with the same seed, so they hold the same weights and their
rngs draw the same dropout masks in the same call order.  Every output of
forward and backward is compared: y, h_n, c_n, dx, dh_0, dc_0 and each gradient.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn
from conftest import (CELL_BY_NAME, CELLS, DTYPES, assert_close, cell_params, random_hx,
                      random_lengths, random_like_outputs, train_step)


def make_pair(cell, I, H, seed=1234, **kwargs):
    auto = cell.make(I, H, backend="auto", seed=seed, **kwargs)
    ref = cell.make(I, H, backend="reference", seed=seed, **kwargs)
    for name, value in ref.state_dict().items():
        np.testing.assert_array_equal(auto.params[name], value)
    return auto, ref


def compare(cell, dtype, rng, *, T=5, B=4, I=3, H=6, num_layers=1, bias=True,
            batch_first=False, bidirectional=False, lengths=None, with_hx=False,
            unbatched=False, dropout=0.0, repeats=1, x_scale=1.0):
    """Run both backends on the same data and assert every result agrees."""
    auto, ref = make_pair(cell, I, H, num_layers=num_layers, bias=bias,
                          batch_first=batch_first, bidirectional=bidirectional,
                          dropout=dropout, dtype=dtype)
    if unbatched:
        x = rng.standard_normal((T, I))
    elif batch_first:
        x = rng.standard_normal((B, T, I))
    else:
        x = rng.standard_normal((T, B, I))
    x = (x * x_scale).astype(dtype)
    hx = random_hx(rng, auto, B, batched=not unbatched) if with_hx else None

    # Inference.
    y_a, h_a = auto(x, hx, lengths)
    y_r, h_r = ref(x, hx, lengths)
    assert_close(y_a, y_r, dtype, "y")
    assert_close(h_a, h_r, dtype, "h_n")

    # Training (several times, so dropout masks keep being drawn in step).
    for _ in range(repeats):
        dy, dh = random_like_outputs(rng, y_r, h_r)
        out_a, grads_a = train_step(auto, x, hx, lengths, dy, dh)
        out_r, grads_r = train_step(ref, x, hx, lengths, dy, dh)
        assert_close(out_a, out_r, dtype, "forward_train")
        assert_close(grads_a, grads_r, dtype, "backward")
        if dropout == 0:
            # forward_train computes exactly what inference computes.
            assert_close(out_a[0], y_r, dtype, "forward_train y vs inference y")
    return auto, ref


SCENARIOS = {
    "plain": dict(),
    "with_hx": dict(with_hx=True),
    "random_lengths": dict(lengths="random"),
    "equal_full_lengths": dict(lengths="equal"),
    "equal_short_lengths": dict(lengths="equal_short", with_hx=True),
    "all_length_one": dict(lengths="ones", bidirectional=True),
    "single_step": dict(T=1, lengths="random"),
    "single_sequence": dict(B=1, lengths="random", with_hx=True, bidirectional=True),
    "deep_bidirectional": dict(num_layers=3, bidirectional=True, lengths="random",
                               with_hx=True),
    "no_bias_batch_first": dict(num_layers=2, bias=False, batch_first=True,
                                lengths="random", with_hx=True),
    "batch_first_bidirectional": dict(batch_first=True, bidirectional=True, num_layers=2),
    "unbatched": dict(unbatched=True, num_layers=2, bidirectional=True, with_hx=True),
    "unbatched_no_hx": dict(unbatched=True, T=7),
    "dropout": dict(num_layers=3, bidirectional=True, dropout=0.5, lengths="random",
                    repeats=2),
    "dropout_batch_first": dict(num_layers=2, batch_first=True, dropout=0.3, with_hx=True),
    "odd_sizes": dict(T=7, B=5, I=1, H=17, num_layers=2, lengths="random"),
    "saturated": dict(x_scale=40.0, num_layers=2, bidirectional=True, with_hx=True),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_backends_agree(cell, dtype, scenario, rng):
    kw = dict(SCENARIOS[scenario])
    kind = kw.pop("lengths", None)
    T, B = kw.get("T", 5), kw.get("B", 4)
    lengths = None if kind is None else random_lengths(rng, B, T, kind)
    compare(cell, dtype, rng, lengths=lengths, **kw)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", cell_params())
def test_backends_agree_over_stack_options(cell, num_layers, bias, bidirectional, rng):
    lengths = random_lengths(rng, 4, 6)
    compare(cell, "float64", rng, T=6, B=4, I=5, H=4, num_layers=num_layers, bias=bias,
            bidirectional=bidirectional, lengths=lengths, with_hx=True)


@pytest.mark.parametrize("cell", cell_params())
def test_lengths_in_any_order_and_as_list(cell, rng):
    """Unsorted lengths with ties, passed as a Python list, as in torch."""
    lengths = [2, 5, 2, 1, 5, 3]
    compare(cell, "float64", rng, T=5, B=6, lengths=lengths, bidirectional=True,
            num_layers=2, with_hx=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_long_sequence(cell, dtype, rng):
    """Many steps: T * B = 720 rows, more than one chunk of the inference kernels'
    input projection (CHUNK_ROWS = 512 rows), with and without lengths."""
    compare(cell, dtype, rng, T=120, B=6, I=4, H=5, bidirectional=True)
    compare(cell, dtype, rng, T=120, B=6, I=4, H=5, bidirectional=True,
            lengths=random_lengths(rng, 6, 120))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_input_projection_panels(cell, dtype, rng):
    """One chunk of steps projects its inputs on W_ih packed a panel (two groups of
    columns) at a time: units that span several panels and end in a partial group, on
    one thread and on two (the second thread's 38 units: two whole groups a gate, the
    gates' tails of 6 sharing groups that span gates); inference, training projects
    every step as one chunk."""
    for threads in (1, 2):
        with fastrnn.thread_limit(threads):
            compare(cell, dtype, rng, T=9, B=3, I=37, H=70)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, I, H", [(16, 5, 12), (21, 1, 17), (33, 40, 8)])
def test_lstm_stacked_input_projection(B, I, H, dtype, rng):
    """Batches of 16 rows and more project each step's inputs inside its recurrent
    GEMM (rows [x_t, h_{t-1}]); a reverse walk, lengths, a second layer whose input is
    the first's output and a layer without biases all go through it."""
    from fastrnn.kernels import lstm as kernel
    itemsize = np.dtype(dtype).itemsize
    assert kernel.stacks_input(B, I, H, H, fastrnn.get_num_threads(), itemsize)
    assert not kernel.stacks_input(B, I, H, H // 2 + 1, 2, itemsize), "projection"
    assert not kernel.stacks_input(12, I, H, H, 2, itemsize), "small batch"
    lstm = CELL_BY_NAME["lstm"]
    compare(lstm, dtype, rng, T=9, B=B, I=I, H=H, num_layers=2, bidirectional=True,
            lengths=random_lengths(rng, B, 9), with_hx=True)
    compare(lstm, dtype, rng, T=4, B=B, I=I, H=H, batch_first=True)
    compare(lstm, dtype, rng, T=5, B=B, I=I, H=H, bias=False, with_hx=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, I, H", [(8, 5, 32), (19, 1, 40), (10, 3, 37), (33, 24, 64)])
@pytest.mark.parametrize("cell", cell_params([CELL_BY_NAME[name] for name in
                                              ("lstm", "gru", "gru_reset_before")]))
def test_batch_split(cell, B, I, H, dtype, rng):
    """From 4 rows per thread, a team splits the batch (LSTM, GRU): each thread carries
    its own rows through the whole sequence, with no barrier between steps, shares
    balanced by the rows' lengths.  Both walks (a bidirectional layer with two threads
    or more per direction), lengths, a second layer, initial states, batch-first and
    the inference's chunks of input projection (T * B > 512 rows) all go through it."""
    from fastrnn.kernels import gru, lstm
    itemsize = np.dtype(dtype).itemsize
    if cell.name == "lstm":
        def splits(B, I, H, nt, P=None):
            return lstm.splits_batch(B, I, H, H if P is None else P, nt, itemsize)
        assert not splits(B, I, H, 2, P=H // 2 + 1), "projection"
    else:
        def splits(B, I, H, nt):
            return gru.splits_batch(B, H, nt, itemsize)
    assert splits(B, I, H, 2)
    assert not splits(B, I, H, 1), "one thread"
    assert not splits(7, I, H, 2), "3 rows per thread"
    assert not splits(B, 1024, 1024, 2), "weights too big"
    with fastrnn.thread_limit(4):
        compare(cell, dtype, rng, T=9, B=B, I=I, H=H, num_layers=2, bidirectional=True,
                lengths=random_lengths(rng, B, 9), with_hx=True)
        compare(cell, dtype, rng, T=4, B=B, I=I, H=H, batch_first=True, bias=False)
        compare(cell, dtype, rng, T=520 // B + 3, B=B, I=I, H=H,
                lengths=random_lengths(rng, B, 520 // B + 3))


def test_lstm_batch_split_by_the_size_of_its_stacked_weights():
    """Two threads split an LSTM's batch from 4 rows each while [W_ih W_hh] fits a
    core's L2 (1 MB here), from 5 up to 1.5 MB, from 8 up to 3 MB (split_batch_fits:
    float32, 4H (I + H) * 4 bytes)."""
    from fastrnn.kernels import lstm

    def splits(B, I, H):
        return lstm.splits_batch(B, I, H, H, 2, 4)
    assert splits(8, 128, 128) and splits(8, 256, 128)           # 512 KB, 768 KB
    assert not splits(8, 300, 160) and not splits(9, 300, 160)   # 1.18 MB, 4-5 rows
    assert splits(10, 300, 160) and splits(10, 300, 180)         # 1.18, 1.38 MB
    assert not splits(10, 240, 240) and splits(16, 240, 240)     # 1.84 MB
    assert not splits(15, 300, 300) and splits(16, 300, 300)     # 2.88 MB
    assert not splits(64, 320, 320)                              # 3.28 MB


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_weight_gradients_over_chunks_and_column_blocks(cell, dtype, rng):
    """The weight gradients' own tiles (fastrnn_weight_grad): more rows than one chunk
    (at most 512 rows of d packed at a time), 140 inputs (more columns than one block
    of packed inputs: 128 in float32, 64 in float64), 37 units (column and row tails of
    the tiles), shares of a team of threads; with a batch of 17 the LSTM splits the
    batch and sums its bias gradient as it copies d, with 5 it splits units and sums
    it step by step."""
    with fastrnn.thread_limit(4):
        compare(cell, dtype, rng, T=40, B=17, I=140, H=37)
        compare(cell, dtype, rng, T=110, B=5, I=140, H=37, bidirectional=True,
                lengths=np.maximum(random_lengths(rng, 5, 110), 104))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_scratch_blocks_kept_between_calls(cell, dtype, rng):
    """Packed weights and the weight gradients' packing space live in blocks kept from
    one kernel call to the next (_blocks.h): calls of one shape after larger and
    smaller ones' run in blocks those packed for other shapes, and must neither read
    what they left nor write past their own size (CI runs this under ASan)."""
    for H in (40, 9, 70, 9, 40):
        compare(cell, dtype, rng, T=20, B=3, I=11, H=H)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_single_row_steps_on_unpacked_weights(cell, dtype, rng):
    """A batch of one row multiplies the recurrent weights as the layer holds them:
    a team of threads, each its units of every gate (204 units: shares in whole packed
    groups, the last share's gate rows short of a block of 8 for the gemv's tail),
    long enough that a bigger batch would pack them; a second layer, both walks
    (two threads each in training, four each in inference), initial states, and
    forward_train's walk too.  Rows of 204 and 236 elements (at least _gemv_rows.h's
    FASTRNN_ROW_WALK_MIN_K: read row after row) end, past their runs of four
    vectors, in none or two more whole vectors (float32 under AVX-512; one each in
    float64) and a masked part of one; rows of 7 and 3 are walked side by side."""
    from fastrnn.kernels import lstm
    from fastrnn._config import kernel_threads
    assert lstm.steps_on_rows(1) and not lstm.steps_on_rows(2)
    assert kernel_threads(1, cell.make(7, 204).gate_count, 204, 7, budget=2) == 2
    with fastrnn.thread_limit(4):
        compare(cell, dtype, rng, T=40, B=1, I=7, H=204, num_layers=2, bidirectional=True,
                with_hx=True)
        compare(cell, dtype, rng, T=33, B=1, I=3, H=236, batch_first=True)


@pytest.mark.parametrize("cell", cell_params())
def test_gradients_into_padded_steps_are_ignored(cell, rng):
    """dy at padded steps does not change any gradient, on either backend."""
    T, B = 5, 3
    lengths = np.array([5, 2, 3])
    auto, ref = make_pair(cell, 3, 4, dtype="float64", bidirectional=True)
    x = rng.standard_normal((T, B, 3))
    y, h_n = ref(x, lengths=lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    dy_noisy = dy.copy()
    pad = np.arange(T)[:, None] >= lengths[None, :]
    dy_noisy[pad] = rng.standard_normal(dy_noisy[pad].shape) * 100
    for layer in (auto, ref):
        _, clean = train_step(layer, x, None, lengths, dy, dh)
        _, noisy = train_step(layer, x, None, lengths, dy_noisy, dh)
        assert_close(noisy, clean, "float64", layer.backend)
        assert not np.any(clean[0][pad]), "dx is 0 at padded steps"


# ------------------------------------------------------------ property test

@st.composite
def configurations(draw, cells):
    cell = draw(st.sampled_from(cells))
    H = draw(st.one_of(st.integers(1, 20), st.sampled_from([17, 33])))
    if cell.proj and H < 2:
        H = 2
    T = draw(st.integers(1, 20))
    B = draw(st.integers(1, 12))
    I = draw(st.integers(1, 20))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, T), min_size=B, max_size=B)))
    return dict(
        cell=cell, T=T, B=B, I=I, H=H, lengths=lengths,
        dtype=draw(st.sampled_from(DTYPES)),
        num_layers=draw(st.integers(1, 2)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        with_hx=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def check_configuration(config):
    config = dict(config)
    cell = config.pop("cell")
    rng = np.random.default_rng(config.pop("seed"))
    lengths = config.pop("lengths")
    compare(cell, config.pop("dtype"), rng, lengths=lengths, **config)


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(configurations([c for c in CELLS if not c.proj]))
def test_backends_agree_on_random_shapes(config):
    check_configuration(config)


@settings(PROPERTY_SETTINGS, max_examples=20)
@given(configurations([c for c in CELLS if c.proj]))
def test_backends_agree_on_random_shapes_with_projection(config):
    check_configuration(config)
