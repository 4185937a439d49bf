"""A layer called right after a NumPy matrix product, on every core.

    python bench/numpy_neighbour.py [--threads N] [--calls N]

NumPy's OpenBLAS keeps its worker threads spinning for a while after each call
(``2**OPENBLAS_THREAD_TIMEOUT`` clock ticks, about 0.1 s by default).  A fastrnn
layer started in that window finds one of its cores taken, and its team, which
meets after every time step, waits for the thread that is not running.  This
script times an LSTM call (input 32, hidden 128, batch 32, 64 steps: the
character LM's layer) alone, right after a NumPy product of the size of that
model's output layer, and right after the same product run on one BLAS thread
(``threadpoolctl.threadpool_limits(1, user_api="blas")``), in interleaved
blocks; each line quotes the median call.  Run it again with
``OPENBLAS_THREAD_TIMEOUT=4`` in the environment to see the spin cut short.
"""

import argparse
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastrnn


def median_ms(layer, x, before, calls):
    times = []
    for _ in range(calls):
        before()
        start = time.perf_counter()
        layer(x)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="fastrnn's threads")
    parser.add_argument("--calls", type=int, default=40, help="calls per block")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    args = parser.parse_args(argv)
    if args.threads is not None:
        fastrnn.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    layer = fastrnn.LSTM(32, 128, batch_first=True, seed=1)
    x = rng.standard_normal((32, 64, 32)).astype(np.float32)
    rows = rng.standard_normal((2048, 128)).astype(np.float32)
    weight = rng.standard_normal((128, 96)).astype(np.float32)

    def nothing():
        pass

    def product():
        rows @ weight

    def product_one_thread():
        with threadpool_limits(1, user_api="blas"):
            rows @ weight

    cases = {"alone": nothing, "after a NumPy product": product,
             "after it on one BLAS thread": product_one_thread}
    layer(x)
    print(f"fastrnn {fastrnn.__version__}, {fastrnn.get_num_threads()} threads; "
          f"LSTM 32 -> 128, B32 T64 float32; median ms of {args.calls} calls")
    for _ in range(args.rounds):
        print("  " + "  ".join(f"{name}: {median_ms(layer, x, before, args.calls):6.2f}"
                               for name, before in cases.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
