"""Two builds of fastrnn's kernels, alternating in one process: is a change faster?

On a shared machine two processes timed one after the other can land in different
stretches of the host's load (10-30% apart); two builds whose calls alternate every
50 ms inside one process see the same stretches.  This imports fastrnn from this tree
(build A) and loads build B's compiled kernel modules (``fastrnn/kernels/{lstm,gru,
rnn}*.so`` of another checkout, built with ``python setup.py build_ext --inplace``)
beside them, then runs the same layer on A's and on B's kernels in alternating blocks,
after checking that both give the same output.  Only the kernel modules are B's: the
Python layers, and anything the kernels cimport from ``fastrnn.kernels.blas``, are A's.

    git worktree add /tmp/old HEAD~1 && (cd /tmp/old && python setup.py build_ext --inplace)
    python bench/ab_builds.py /tmp/old LSTM 1x512x512,24x200x100 --rounds 10
    python bench/ab_builds.py /tmp/old LSTM 32x512x512 --train   # forward_train + backward

prints, per shape (batch x hidden x input, T = 50), A's and B's best time and B / A,
the best and the median of the rounds' pairs (below 1: B is faster), and the median by
where the host had the two threads at each round's start (near, far, shared: README,
"How the cost grows"; a round can still straddle a change).  A build against itself
reads 1.00-1.02.
"""
import argparse
import glob
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

import fastrnn
import fastrnn._backends as backends
from fastrnn._bench import placement

KERNELS = ("gru", "lstm", "rnn")


def load_kernels(root):
    """Build ``root``'s kernel modules, loaded without replacing this tree's."""
    modules = {}
    for name in KERNELS:
        paths = glob.glob(os.path.join(root, "fastrnn", "kernels", f"{name}.*.so"))
        if not paths:
            raise SystemExit(f"no built fastrnn/kernels/{name} module under {root}")
        qualified = f"fastrnn.kernels.{name}"
        spec = importlib.util.spec_from_file_location(qualified, paths[0])
        module = importlib.util.module_from_spec(spec)
        ours = sys.modules.get(qualified)
        spec.loader.exec_module(module)
        sys.modules[qualified] = ours       # this tree's module stays the imported one
        modules[name] = module
    return modules


def use(modules):
    backends._gru, backends._lstm, backends._rnn = (modules[n] for n in KERNELS)


def place_now():
    """Where the host has the two threads right now (README, "How the cost grows"):
    "shared" (one core), "far" (round trip above 200 ns) or "near"."""
    trip, share = placement(2)
    if trip is None:
        return "one"
    return "shared" if share < 0.75 else "far" if trip > 200 else "near"


def best_of(call, seconds):
    call()
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("other", help="checkout whose built kernels are build B")
    ap.add_argument("cell", choices=["LSTM", "GRU", "RNN"])
    ap.add_argument("shapes", help="BxHxI,... (batch x hidden x input)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--train", action="store_true",
                    help="time forward_train + backward instead of inference")
    args = ap.parse_args()
    build_a = {n: getattr(backends, "_" + n) for n in KERNELS}
    build_b = load_kernels(args.other)
    for shape in args.shapes.split(","):
        batch, hidden, inputs = map(int, shape.split("x"))
        layer = getattr(fastrnn, args.cell)(inputs, hidden, seed=0)
        x = np.random.default_rng(0).standard_normal(
            (args.steps, batch, inputs)).astype(np.float32)
        dy = np.ones((args.steps, batch, hidden), np.float32)

        def run():
            if not args.train:
                return layer(x)[0]
            y, _, cache = layer.forward_train(x)
            dx = layer.backward(cache, dy)[0]
            return np.concatenate([y.ravel(), dx.ravel()])
        use(build_a)
        y_a = run()
        use(build_b)
        y_b = run()
        np.testing.assert_allclose(y_b, y_a, rtol=1e-4, atol=1e-4)
        times = {"a": [], "b": []}
        places = []
        for r in range(args.rounds):
            places.append(place_now())
            order = (("a", build_a), ("b", build_b))
            for key, build in order if r % 2 == 0 else order[::-1]:
                use(build)
                times[key].append(best_of(run, 0.05))
        use(build_a)
        a, b = min(times["a"]), min(times["b"])
        pairs = [tb / ta for ta, tb in zip(times["a"], times["b"])]
        by_place = {}
        for place, pair in zip(places, pairs):
            by_place.setdefault(place, []).append(pair)
        split = "  ".join(f"{place} {statistics.median(v):.3f} ({len(v)})"
                          for place, v in sorted(by_place.items()))
        print(f"{shape:>14}: A {a * 1e3:8.3f} ms  B {b * 1e3:8.3f} ms  "
              f"B/A best {b / a:.3f}  median {statistics.median(pairs):.3f}  "
              f"by place: {split}", flush=True)


if __name__ == "__main__":
    main()
