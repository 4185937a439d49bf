"""How well two Python threads, one fastrnn thread each, overlap on this machine.

    python bench/python_threads.py [--rounds 7]

The tests check what is certain (kernels release the GIL; concurrent calls give the
serial answers).  How much two calls gain from running at once is a property of the
machine as well: two vCPUs that are hyperthreads of one core share its FMA units, so two
compute-bound kernels overlap far less than two hash digests do.  This prints, per round,
the wall time of both calls at once over the time of the two one after the other (0.5 is
perfect overlap, 1.0 none) for a GRU(64, 256) on 300 x 32 steps, beside two controls that
also release the GIL: NumPy SGEMMs under one BLAS thread (compute-bound, like the layer)
and SHA-256 digests of 4 MB (integer work).
"""

import argparse
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

import fastrnn


def overlap_ratio(pool, call, args):
    t0 = time.perf_counter()
    for a in args:
        call(a)
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    list(pool.map(call, args))
    return (time.perf_counter() - t0) / serial


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    layers = [fastrnn.GRU(64, 256, seed=k) for k in range(2)]
    x = rng.standard_normal((300, 32, 64)).astype(np.float32)
    mats = [rng.standard_normal((768, 768)).astype(np.float32) for _ in range(2)]
    blobs = [rng.bytes(4 << 20) for _ in range(2)]

    def layer_call(layer):
        with fastrnn.thread_limit(1):
            layer(x)

    def sgemm_call(a):
        for _ in range(8):
            a @ a

    def sha_call(blob):
        hashlib.sha256(blob).digest()

    jobs = {"fastrnn GRU": (layer_call, layers), "NumPy SGEMM": (sgemm_call, mats),
            "SHA-256": (sha_call, blobs)}
    ratios = {name: [] for name in jobs}
    # threadpoolctl's limit is process-wide: it holds NumPy's BLAS to one thread in the
    # pool's threads too, so each SGEMM is one core's work, like one fastrnn thread.
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(max_workers=2) as pool:
        for call, items in jobs.values():
            overlap_ratio(pool, call, items)          # warm up
        for _ in range(args.rounds):                  # interleaved: the same noise for all
            for name, (call, items) in jobs.items():
                ratios[name].append(overlap_ratio(pool, call, items))
    print(f"{'two calls at once / one after the other':<40} {'best':>6} {'median':>7}")
    for name, r in ratios.items():
        print(f"{name:<40} {min(r):6.2f} {np.median(r):7.2f}")


if __name__ == "__main__":
    main()
