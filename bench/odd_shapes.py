"""Shapes off the default grid, drawn at random (batch 1 to 48, odd hidden and input
sizes), each timed as ``python -m fastrnn bench`` times a row (fastrnn, PyTorch and
onnxruntime interleaved, outputs checked first), then the table and the Targets block
over all of them: does any size fall off a cliff?

    python bench/odd_shapes.py --count 30 --seed 1
    python bench/odd_shapes.py --cells LSTM --modes inference --count 40 --seed 11

Each shape is its own one-row run of the bench (so each measures its ceiling again:
about a second a shape on top of the timings).  The seed fixes the shapes, not the
timings; the machine's load still moves them (README, "Performance").
"""
import argparse

import numpy as np

from fastrnn import _bench


def draw_shapes(rng, count, cells, max_batch=48, hidden=(64, 768), inputs=(16, 600)):
    """(cell, batch, hidden, input) for ``count`` shapes, the cells taken in turn."""
    return [(cells[k % len(cells)], int(rng.integers(1, max_batch + 1)),
             int(rng.integers(hidden[0], hidden[1] + 1)),
             int(rng.integers(inputs[0], inputs[1] + 1))) for k in range(count)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=30, help="shapes to draw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cells", default="LSTM,GRU")
    ap.add_argument("--modes", default="inference,training")
    ap.add_argument("--max-batch", type=int, default=48)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved blocks a shape")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    cells = [c.strip().upper() for c in args.cells.split(",")]
    modes = tuple(m.strip() for m in args.modes.split(","))
    results = []
    for cell, B, H, I in draw_shapes(np.random.default_rng(args.seed), args.count, cells,
                                     args.max_batch):
        grid = dict(cells=(cell,), modes=modes, batches=(B,), hiddens=(H,), inputs=(I,),
                    steps=args.steps)
        rows = _bench.run(grid, threads=args.threads, repeats=args.repeats,
                          reference_max_flops=0, progress=False)
        for r in rows:
            print(f"{r['cell']} {r['mode']} B{B} H{H} I{I}: "
                  + ", ".join(f"{name} {t * 1e3:.3f} ms" for name, t in r["times_s"].items()),
                  flush=True)
        results += rows
    print()
    print(_bench.format_table(results))
    print()
    print(_bench.format_targets(_bench.targets(results)))


if __name__ == "__main__":
    main()
