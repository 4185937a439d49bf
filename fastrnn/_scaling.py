"""How fastrnn's cost grows: with the sequence length, the batch, and the threads.

``python -m fastrnn bench`` prints these below its table, so that every run shows:

* time linear in T: the time per step stays flat as T grows;
* time linear in B past small sizes: doubling the batch at most doubles the time;
* inference memory that does not grow with T: the input projection runs in chunks,
  so what a call allocates beyond its output is the same at T = 50 and T = 3200;
* more threads never slower than one: the time on the run's threads over one thread's,
  beside the cross-core round trip measured right before (a team's barriers pay it:
  on a shared host it can grow 4x for minutes, and small steps on two threads then
  run slower than on one).

Timings are interleaved and quoted by their best block, as the table's are.
"""

import tracemalloc

import numpy as np

import fastrnn
from fastrnn._bench import format_core_share, format_round_trip, placement, time_calls
from fastrnn._scratch import POOL

STEPS = (25, 50, 100, 200)
BATCHES = (8, 16, 32, 64)
MEMORY_STEPS = (100, 800, 6400)      # from 64 steps on, B8 projects 512-row chunks
THREAD_SHAPES = dict(batches=(1, 8, 32), hiddens=(128, 512))
QUICK = dict(steps=(20, 80), batches=(8, 16, 32), memory_steps=(100, 1600),
             thread_shapes=dict(batches=(1,), hiddens=(128,)))


def _layer_and_input(cell, B, H, T, seed=0):
    layer = getattr(fastrnn, cell)(H, H, seed=seed)
    x = np.random.default_rng(seed).standard_normal((T, B, H)).astype(np.float32)
    return layer, x


def _interleaved_best(fns, min_time, repeats):
    """The best seconds per call of each function, blocks interleaved."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            times[i].append(time_calls(fn, min_time))
    return [min(t) for t in times]


def inference_times(cell, H, shapes, min_time=0.05, repeats=3):
    """[seconds per inference call] for each (T, B) of ``shapes``, interleaved."""
    fns = []
    for T, B in shapes:
        layer, x = _layer_and_input(cell, B, H, T)
        fns.append(lambda layer=layer, x=x: layer(x))
    return _interleaved_best(fns, min_time, repeats)


def memory_beyond_output(cell, B, H, steps=MEMORY_STEPS):
    """[(T, bytes)]: the peak of what one inference call allocates (NumPy arrays and
    fastrnn's scratch buffers, traced by tracemalloc) minus its output buffer's size.
    The scratch pool is emptied before each call, so every buffer the call uses is
    allocated, and counted, in it."""
    out = []
    for T in steps:
        layer, x = _layer_and_input(cell, B, H, T)
        POOL.clear()
        tracemalloc.start()
        try:
            y, _ = layer(x)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # The output may sit in a larger buffer (the pool rounds sizes up by up to
        # 12.5%): what it costs is that buffer's size.
        owner = y if y.base is None else y.base
        out.append((T, peak - owner.nbytes))
    return out


def threads_vs_one(cells, modes, batches, hiddens, threads, T=50, min_time=0.05,
                   repeats=2):
    """[(cell, mode, B, H, seconds on 1 thread, seconds on ``threads``, the round trip
    in ns and the core share measured right before (``_bench.placement``), or None)]."""
    saved = fastrnn.get_num_threads()
    rows = []
    try:
        for cell in cells:
            for mode in modes:
                for B in batches:
                    for H in hiddens:
                        layer, x = _layer_and_input(cell, B, H, T)
                        if mode == "training":
                            dy = np.ones((T, B, H), np.float32)

                            def call(layer=layer, x=x, dy=dy):
                                layer.backward(layer.forward_train(x)[-1], dy)
                        else:
                            def call(layer=layer, x=x):
                                layer(x)

                        def on(n, call=call):
                            def fn():
                                fastrnn.set_num_threads(n)
                                call()
                            return fn
                        trip, share = placement(threads)
                        one, many = _interleaved_best([on(1), on(threads)], min_time,
                                                      repeats)
                        rows.append((cell, mode, B, H, one, many, trip, share))
    finally:
        fastrnn.set_num_threads(saved)
    return rows


def run(cells, modes, threads, quick=False):
    """Everything the bench prints below its table, as one dict (``quick``: fewer
    and shorter timings, for ``--quick``)."""
    q = QUICK if quick else {}
    timing = dict(min_time=0.02, repeats=2) if quick else {}
    cell = "LSTM" if "LSTM" in cells else cells[0]
    shapes = q.get("thread_shapes", THREAD_SHAPES)
    steps, batches = q.get("steps", STEPS), q.get("batches", BATCHES)
    return dict(
        cell=cell, hidden=256,
        steps=list(zip(steps, inference_times(cell, 256, [(T, 8) for T in steps], **timing))),
        batches=list(zip(batches, inference_times(cell, 256, [(50, B) for B in batches],
                                                  **timing))),
        memory=memory_beyond_output(cell, 8, 256, q.get("memory_steps", MEMORY_STEPS)),
        threads=threads,
        thread_rows=threads_vs_one(cells, modes, shapes["batches"], shapes["hiddens"],
                                   threads, **timing) if threads > 1 else [])


def format_report(s):
    cell, H = s["cell"], s["hidden"]
    lines = [f"How the cost grows ({cell}, hidden {H}, inference; batch 8 unless said):"]
    per_step = [t / T for T, t in s["steps"]]
    lines.append("  T:                " + "  ".join(f"{T:>7d}" for T, _ in s["steps"]))
    lines.append("  us per step:      " + "  ".join(f"{1e6 * v:7.1f}" for v in per_step)
                 + f"   (largest / smallest {max(per_step) / min(per_step):.2f}; "
                 "1.00 is linear in T)")
    # Time ratio over batch ratio between neighbours: at most 1 is linear (or better).
    growth = [(t2 / t1) / (b2 / b1)
              for (b1, t1), (b2, t2) in zip(s["batches"], s["batches"][1:])]
    lines.append("  B (T = 50):       " + "  ".join(f"{B:>7d}" for B, _ in s["batches"]))
    lines.append("  ms per call:      " + "  ".join(f"{1e3 * t:7.2f}" for _, t in s["batches"])
                 + "   (time growth / batch growth: " + ", ".join(f"{g:.2f}" for g in growth)
                 + "; at most 1.00 is linear)")
    mem = s["memory"]
    lines.append("  MB beyond y, B8:  " + "  ".join(
        f"T={T}: {b / 2 ** 20:.2f}" for T, b in mem)
        + ("   (flat in T)" if mem[-1][1] <= 1.05 * mem[0][1] + 4096
           else "   (GROWS with T)"))
    if s["thread_rows"]:
        n = s["threads"]
        lines.append(f"Threads: time on {n} threads / time on 1 (above 1: the team costs "
                     "more than it gives; rt ns and core: where the host put two threads "
                     "right before, as in the table)")
        lines.append(f"  {'cell':4s} {'mode':5s} {'B':>3s} {'H':>5s} {'1T ms':>9s} "
                     f"{f'{n}T ms':>9s} {'ratio':>6s} {'rt ns':>6s} {'core':>5s}")
        for cell, mode, B, H, one, many, trip, share in s["thread_rows"]:
            lines.append(f"  {cell:4s} {mode[:5]:5s} {B:3d} {H:5d} {1e3 * one:9.3f} "
                         f"{1e3 * many:9.3f} {many / one:6.2f} {format_round_trip(trip):>6s} "
                         f"{format_core_share(share):>5s}" + ("  slower" if many > one else ""))
    return "\n".join(lines)
