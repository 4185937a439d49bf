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
