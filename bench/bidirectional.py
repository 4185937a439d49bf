"""Bidirectional layers: both directions at once on two halves of the threads, or
all threads on each direction in turn?  Times both policies, interleaved.

    python bench/bidirectional.py [--threads N]

Prints, per shape, the time of each policy and their ratio; the policy
fastrnn._backends.concurrent_directions_pay is set from this table.
"""

import argparse

import numpy as np

import fastrnn
from fastrnn._bench import time_calls
from fastrnn import _backends

SHAPES = [("LSTM", 1, 128), ("LSTM", 1, 512), ("LSTM", 8, 256), ("LSTM", 32, 512),
          ("LSTM", 64, 1024), ("GRU", 1, 256), ("GRU", 32, 512), ("RNN", 8, 256)]



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    saved = _backends.concurrent_directions_pay
    rng = np.random.default_rng(0)
    print(f"threads={fastrnn.get_num_threads()} T={args.steps} float32, training = forward_train + backward")
    print(f"{'cell':>5} {'B':>3} {'H':>5} {'mode':>6} {'in turn ms':>11} {'concurrent ms':>14} {'ratio':>6}")
    for cell, B, H in SHAPES:
        layer = getattr(fastrnn, cell)(H, H, bidirectional=True, seed=0)
        x = rng.standard_normal((args.steps, B, H)).astype(np.float32)
        dy = np.ones((args.steps, B, 2 * H), np.float32)

        def train():
            out = layer.forward_train(x)
            layer.backward(out[-1], dy)
        for mode, fn in (("infer", lambda: layer(x)), ("train", train)):
            res = {"turn": [], "conc": []}
            for _ in range(args.repeats):
                for policy, pays in (("turn", lambda *a: False), ("conc", lambda *a: True)):
                    _backends.concurrent_directions_pay = pays
                    res[policy].append(time_calls(fn, 0.2))
            t_turn, t_conc = np.median(res["turn"]), np.median(res["conc"])
            print(f"{cell:>5} {B:>3} {H:>5} {mode:>6} {t_turn * 1e3:11.3f} {t_conc * 1e3:14.3f} "
                  f"{t_conc / t_turn:6.2f}")
    _backends.concurrent_directions_pay = saved


if __name__ == "__main__":
    main()
