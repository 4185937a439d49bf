"""No leaks: many calls of forward, forward_train and backward leave the process's
memory flat (the kernels allocate nothing; every buffer is a NumPy array)."""

import gc

import numpy as np
import pytest

import fastrnn


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"),
                    reason="needs Linux's /proc to read the resident set size")
@pytest.mark.parametrize("cls", [fastrnn.LSTM, fastrnn.GRU, fastrnn.RNN])
def test_ten_thousand_calls_leave_memory_flat(cls):
    layer = cls(3, 8, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    lengths = np.array([4, 2])
    dy = np.ones((4, 2, 8), np.float32)

    def calls(n):
        for _ in range(n):
            layer(x, lengths=lengths)
            out = layer.forward_train(x, lengths=lengths)
            layer.backward(out[-1], dy)
        stream = layer.__class__(3, 8, seed=0).stream(2)
        for _ in range(n):
            stream.step(x[0])
        gc.collect()

    calls(500)                        # warm caches, pools and allocator arenas
    before = rss_bytes()
    calls(10_000)
    grown = rss_bytes() - before
    # A leak of even one small buffer per call would be >= 10_000 * 64 bytes.
    assert grown < 2 * 2 ** 20, f"resident memory grew by {grown / 2 ** 20:.1f} MiB"
