"""pytest-benchmark suite: ``python -m pytest bench/test_bench_layers.py``.

Times fastrnn's layers (inference and training) and, beside them, the same layer in
PyTorch when it is installed; compare with ``--benchmark-group-by=param``.  Not part
of the test run (``tests/``): speed is measured here, correctness there.
"""

import numpy as np
import pytest

import fastrnn

SHAPES = [(1, 128), (8, 256), (32, 512)]          # (batch, hidden); input = hidden
CELLS = ["LSTM", "GRU", "RNN"]
T = 50


def _inputs(B, H):
    rng = np.random.default_rng(0)
    return rng.standard_normal((T, B, H)).astype(np.float32)


@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_fastrnn(benchmark, cell, mode, B, H):
    layer = getattr(fastrnn, cell)(H, H, seed=0)
    x = _inputs(B, H)
    if mode == "inference":
        benchmark(layer, x)
    else:
        dy = np.ones((T, B, H), np.float32)
        benchmark(lambda: layer.backward(layer.forward_train(x)[-1], dy))


@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_torch(benchmark, cell, mode, B, H):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(fastrnn.get_num_threads())
    module = getattr(fastrnn, cell)(H, H, seed=0).to_torch()
    x = torch.from_numpy(_inputs(B, H))
    if mode == "inference":
        def run():
            with torch.inference_mode():
                module(x)
    else:
        xg = x.clone().requires_grad_(True)

        def run():
            y = module(xg)[0]
            y.backward(torch.ones_like(y))
    benchmark(run)
