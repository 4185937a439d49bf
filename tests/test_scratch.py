"""The scratch pool: reuse, what it refuses, its bound; and that the layers hand back
only buffers nothing else holds (results stay intact across later calls)."""

import numpy as np
import pytest

import fastrnn
from fastrnn._scratch import MIN_POOLED_BYTES, BufferPool, size_class

N = MIN_POOLED_BYTES // 4          # float32 elements of the smallest pooled array


def test_pool_reuses_exact_sizes_and_refuses_views_and_2d():
    pool = BufferPool()
    a = pool.take(N, np.float32)
    pool.give(a)
    assert pool.take(N, np.float32) is a
    assert pool.take(N, np.float32) is not a             # taken already
    assert pool.take(N, np.float64).dtype == np.float64  # dtype is part of the key
    pool.give(a[1:], a.reshape(2, -1), np.empty((N // 4, 4), np.float32),
              np.empty(8, np.float32))                   # a view, a 2-D array, too small
    assert pool.pooled_bytes == 0


def test_pool_serves_nearby_sizes_from_one_buffer():
    """Variable-length batches ask for a different size each time: one size class
    (at most 12.5% above the request) serves them all."""
    pool = BufferPool()
    first = pool.take(N + 1, np.float32)
    assert first.shape == (N + 1,) and first.base is not None
    buffer = first.base
    assert buffer.shape[0] == size_class(N + 1) <= (N + 1) * 1.125
    pool.give(first)                                     # the view brings its buffer back
    assert pool.pooled_bytes == buffer.nbytes
    for n in (N + 7, size_class(N + 1)):
        got = pool.take(n, np.float32)
        assert got.shape == (n,) and (got.base if got.base is not None else got) is buffer
        pool.give(got)
    assert pool.pooled_bytes == buffer.nbytes


def test_pool_refuses_views_of_buffers_it_did_not_make():
    pool = BufferPool()
    foreign = np.empty(size_class(N + 1), np.float32)
    pool.give(foreign[:N + 1])
    assert pool.pooled_bytes == 0
    made = pool.take(N + 1, np.float32)
    pool.give(made[1:])                                  # not at the buffer's start
    assert pool.pooled_bytes == 0
    pool.give(made)
    assert pool.pooled_bytes == made.base.nbytes


@pytest.mark.parametrize("n", [17, 100, 1000, 1025, 16385, 65536 * 3 + 1])
def test_size_classes_round_up_by_at_most_an_eighth(n):
    c = size_class(n)
    assert n <= c <= n * 1.125 and size_class(c) == c


def test_pool_stays_within_its_bound():
    pool = BufferPool(max_bytes=3 * MIN_POOLED_BYTES)
    arrays = [np.empty(N, np.float32) for _ in range(5)]
    pool.give(*arrays)
    assert pool.pooled_bytes == 3 * MIN_POOLED_BYTES
    assert pool.take(N, np.float32) is arrays[-1]        # the newest are kept


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("lengths", [None, [40, 17, 33, 40]])
def test_layer_results_survive_later_calls(rng, batch_first, lengths):
    layer = fastrnn.GRU(32, 96, num_layers=2, bidirectional=True, batch_first=batch_first,
                        seed=0)
    shape = (4, 40, 32) if batch_first else (40, 4, 32)
    x = rng.standard_normal(shape).astype(np.float32)
    y, h, cache = layer.forward_train(x, lengths=lengths)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dh, grads = layer.backward(cache, dy)
    kept = [a.copy() for a in (y, h, dx, dh, *grads.values())]
    for _ in range(3):                                   # reuse whatever went back
        y2, _, c2 = layer.forward_train(2 * x, lengths=lengths)
        layer.backward(c2, -dy)
        layer(3 * x, lengths=lengths)
    for before, after in zip(kept, (y, h, dx, dh, *grads.values())):
        np.testing.assert_array_equal(before, after)


def test_inputs_are_never_pooled(rng):
    torch = pytest.importorskip("torch")
    layer = fastrnn.LSTM(64, 64, seed=0)
    flat = rng.standard_normal(30 * 8 * 64).astype(np.float32)
    tensor = torch.from_numpy(flat.copy())
    for x in (flat.reshape(30, 8, 64), tensor.view(30, 8, 64)):
        data = x if isinstance(x, np.ndarray) else x.numpy()
        before = data.copy()
        layer(x)
        for _ in range(3):
            layer(rng.standard_normal((30, 8, 64)).astype(np.float32))
        np.testing.assert_array_equal(data, before)


def test_lent_buffer_comes_back_only_once_unreferenced():
    pool = BufferPool()
    a = pool.lend((4, N // 4), np.float32)
    address = a.base.ctypes.data          # not the buffer itself: that would hold it
    assert a.shape == (4, N // 4) and a.flags.c_contiguous
    b = pool.lend((4, N // 4), np.float32)
    assert not np.shares_memory(a, b)                    # a is still held
    view = a[1:, ::2]
    del a
    c = pool.lend((4, N // 4), np.float32)
    assert not np.shares_memory(c, view)                 # a view keeps its buffer held
    del view, c
    again = pool.lend((N,), np.float32)                  # same size class, any shape
    assert again.base.ctypes.data == address
    assert not np.shares_memory(again, b)


def test_lent_buffer_held_by_other_owners_is_not_reused():
    """Whatever keeps a reference to the array keeps its buffer: a memoryview, an
    array built on its buffer, a torch tensor sharing its memory."""
    torch = pytest.importorskip("torch")
    pool = BufferPool()
    holders = []
    for wrap in (memoryview, lambda a: np.frombuffer(a, np.float32), torch.from_numpy):
        a = pool.lend((N,), np.float32)
        a[:] = 7
        holders.append(wrap(a))
        del a
        fresh = pool.lend((N,), np.float32)
        fresh[:] = -1
        held = np.asarray(holders[-1].numpy() if hasattr(holders[-1], "numpy")
                          else holders[-1])
        assert np.all(held == 7)
        del fresh


def test_small_lent_arrays_are_plain_and_pool_is_bounded():
    pool = BufferPool(max_bytes=3 * MIN_POOLED_BYTES)
    small = pool.lend((8,), np.float32)
    assert small.base is None
    kept = [pool.lend((N,), np.float32) for _ in range(5)]   # all held: all stay valid
    assert len({k.base.ctypes.data for k in kept}) == 5
    del kept
    pool.lend((N,), np.float32)                          # a free one serves it
    assert pool._lent_bytes == 5 * MIN_POOLED_BYTES
    pool.lend((2 * N,), np.float32)       # a new buffer, over the bound: free ones go
    assert pool._lent_bytes <= 3 * MIN_POOLED_BYTES


def test_lent_buffers_never_enter_the_free_pool():
    pool = BufferPool()
    a = pool.lend((N,), np.float32)
    pool.give(a.base)                                    # as recycle() might, by mistake
    assert pool.pooled_bytes == 0
    assert not np.shares_memory(pool.take(N, np.float32), a)


def test_training_loop_outputs_stay_intact_while_held(rng):
    """A Sequential's outputs, logits, gradients and the loss gradient are lent: kept
    ones must not change while later batches run."""
    model = fastrnn.Sequential([fastrnn.Embedding(50, 16, seed=0),
                                fastrnn.LSTM(16, 64, batch_first=True, seed=1),
                                fastrnn.Dense(64, 50, seed=2)])
    tokens = rng.integers(0, 50, (16, 40))
    out, cache = model.forward_train(tokens, logits=True)
    _, d_out = fastrnn.losses.cross_entropy(out, tokens)
    _, grads = model.backward(cache, d_out)
    kept = [a.copy() for a in (out, d_out, *grads.values())]
    for _ in range(3):
        o2, c2 = model.forward_train(rng.integers(0, 50, (16, 40)), logits=True)
        model.backward(c2, fastrnn.losses.cross_entropy(o2, tokens)[1])
        model(tokens)
    for before, after in zip(kept, (out, d_out, *grads.values())):
        np.testing.assert_array_equal(before, after)


def test_release_memory_returns_idle_buffers_and_keeps_held_arrays(rng):
    layer = fastrnn.LSTM(64, 64, batch_first=True, seed=0)
    x = rng.standard_normal((8, 300, 64)).astype(np.float32)
    kept, _ = layer(x)                                   # lent, held
    expected = kept.copy()
    layer(x)                                             # lent, dropped at once
    released = fastrnn.release_memory()
    assert released >= kept.nbytes                       # at least the dropped output
    assert fastrnn.release_memory() == 0                 # nothing idle left
    layer(2 * x)
    np.testing.assert_array_equal(kept, expected)        # the held one was not reused
