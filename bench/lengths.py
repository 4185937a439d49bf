"""Variable-length batches cost what their real steps cost, not their padding.

    python bench/lengths.py [--cell LSTM] [--batch 32] [--hidden 256] [--steps 100]

Times one batch at full length and the same batch with mostly short sequences
(lengths uniform in 1..T/4, one sequence at full length so T is unchanged), for
fastrnn and, when installed, torch's pack_padded_sequence path; prints each time
beside the fraction of real steps.  fastrnn packs rows like a PackedSequence, so
its time should follow the fraction of real steps.
"""

import argparse

import numpy as np

import fastrnn
from fastrnn._bench import time_calls



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", default="LSTM")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    B, H, T = args.batch, args.hidden, args.steps
    rng = np.random.default_rng(0)
    layer = getattr(fastrnn, args.cell)(H, H, seed=0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    full = np.full(B, T)
    short = rng.integers(1, T // 4 + 1, B)
    short[0] = T
    dy = np.ones((T, B, H), np.float32)
    rows = {"full": 1.0, "short": short.sum() / (B * T)}
    impls = {"fastrnn infer": lambda L: (lambda: layer(x, lengths=L)),
             "fastrnn train": lambda L: (lambda: layer.backward(
                 layer.forward_train(x, lengths=L)[-1], dy))}
    try:
        import torch
        torch.set_num_threads(fastrnn.get_num_threads())
        module = layer.to_torch()
        xt = torch.from_numpy(x)

        def torch_packed(L):
            def run():
                with torch.inference_mode():
                    p = torch.nn.utils.rnn.pack_padded_sequence(
                        xt, torch.from_numpy(L), enforce_sorted=False)
                    module(p)
            return run
        impls["torch packed infer"] = torch_packed
    except ImportError:
        pass
    print(f"{args.cell} B={B} H={H} T={T}, {fastrnn.get_num_threads()} threads; "
          f"short batch: {rows['short']:.1%} of the steps are real")
    print(f"{'':>20} {'full ms':>9} {'short ms':>9} {'time ratio':>11} {'step ratio':>11}")
    for name, make in impls.items():
        t_full = time_calls(make(full), 0.3)
        t_short = time_calls(make(short), 0.3)
        print(f"{name:>20} {t_full * 1e3:9.3f} {t_short * 1e3:9.3f} {t_short / t_full:11.2f} "
              f"{rows['short']:11.2f}")


if __name__ == "__main__":
    main()
