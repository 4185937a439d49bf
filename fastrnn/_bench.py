"""``python -m fastrnn bench``: fastrnn against its peers, side by side, in one run.

Every configuration is timed interleaved (a block of fastrnn calls, then a block
of each peer's, repeated), so that the machine's drift hits all of them alike;
each is quoted by its best block.  Before each block the runner sleeps briefly:
OpenMP, OpenBLAS and onnxruntime keep their worker threads spinning for a while
after a call, and on a small machine those spinners would otherwise steal the
cores from whoever runs next.  The table quotes each peer's time and the ratio
fastrnn / peer, fastrnn's achieved GFLOP/s and its fraction of the machine's GEMM
rate measured in the same run: the higher of NumPy's SGEMM and fastrnn's own packed
GEMM (where NumPy's BLAS leaves the widest vectors unused, the latter is the real
ceiling).  A peer's outputs are checked against fastrnn's before it is timed.
Before each row, two probes say where the host has put two threads (on a shared
machine that moves every few seconds to minutes): the round trip of a cache line
between them (rt ns) and the share of a core each gets when both compute (core,
near 0.5 on one core's SMT siblings); see README, "How the cost grows".
"""

import argparse
import json
import platform
import sys
import time
import tracemalloc

import numpy as np

import fastrnn
from fastrnn import _threads

CELLS = {"RNN": 1, "LSTM": 4, "GRU": 3}
DEFAULT_GRID = dict(cells=("LSTM", "GRU", "RNN"), modes=("inference", "training"),
                    batches=(1, 8, 32, 64), hiddens=(128, 256, 512, 1024), steps=50)
QUICK_GRID = dict(cells=("LSTM", "GRU", "RNN"), modes=("inference", "training"),
                  batches=(1, 32), hiddens=(128, 512), steps=20)


def _flops(cell, mode, T, B, I, H):
    """Multiply-adds x 2 of the GEMMs; training adds backward's two GEMM sets."""
    forward = 2.0 * T * B * CELLS[cell] * H * (I + H)
    return forward * (3 if mode == "training" else 1)


# Pause before each timed block, long enough for other runtimes' spinning workers
# to go to sleep (libgomp spins ~0.3 ms) ...
SETTLE_S = 0.02
# ... and after onnxruntime's: its pool's worker kept a core busy for 50-80 ms
# after a run (its CPU time read from /proc, 2 threads); a block of fastrnn
# started 20 ms after one ran LSTM(128) at batch 1 in 0.67-0.97 ms, against
# 0.39 ms 100 ms after, and 0.39 ms with no onnxruntime in the process.
SETTLE_AFTER_SPINNER_S = 0.12
# Configurations of fewer floating-point operations get twice the timed blocks.
SHORT_FLOPS = 1e9


def time_calls(fn, min_time, settle=SETTLE_S):
    """Seconds per call of ``fn``, over enough calls to last ``min_time``, after
    ``settle`` seconds of sleep."""
    time.sleep(settle)
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n


def sgemm_gflops(threads, size=1024, repeats=5):
    """The machine's float32 GEMM rate (NumPy's BLAS, ``threads`` threads), the
    best of ``repeats`` timings."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    with threadpool_limits(threads, user_api="blas"):
        best = min(time_calls(lambda: a @ b, 0.2) for _ in range(repeats))
    return 2.0 * size ** 3 / best / 1e9


def packed_gemm_gflops(threads, size=1024, repeats=5, calls=3):
    """fastrnn's own float32 GEMM rate: the packed micro-kernel that its layers'
    steps, input projections and weight gradients run on (fastrnn.kernels.blas.
    packed_gemm_seconds), ``threads`` threads, the best of ``repeats`` timings.  Where
    NumPy's BLAS does not use the machine's widest vectors (SciPy's OpenBLAS runs its
    AVX2 kernels on AMD's AVX-512 Zen 5), this is the higher ceiling."""
    from fastrnn.kernels import blas
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    w = rng.standard_normal((size, size)).astype(np.float32)
    c = np.empty((size, size), np.float32)
    blas.packed_gemm_seconds(a, w, c, threads, 1)
    best = min(blas.packed_gemm_seconds(a, w, c, threads, calls) / calls
               for _ in range(repeats))
    return 2.0 * size ** 3 / best / 1e9


def round_trip_ns(threads, rounds=400, tries=5):
    """The cross-core round trip of a cache line between two of fastrnn's threads
    (``fastrnn._threads.core_round_trip_ns``, the best of ``tries``: a thread that the
    host preempts mid-way only adds time), or None on one thread.  Every barrier of a
    team pays it, and it tells where the host put the two threads (README, "How the
    cost grows")."""
    if threads <= 1:
        return None
    trips = [_threads.core_round_trip_ns(rounds) for _ in range(tries)]
    return None if None in trips else min(trips)


def core_share(threads, iters=300000, tries=5):
    """How much of a core each of two of fastrnn's threads gets when both compute
    (``fastrnn._threads.team_compute_share``, the median of ``tries``: a preempted
    run can push one either way): about 1 on cores of their own, about 0.5 where the
    host has put both on one core; None on one thread."""
    if threads <= 1:
        return None
    shares = [_threads.team_compute_share(iters) for _ in range(tries)]
    return None if None in shares else float(np.median(shares))


def placement(threads):
    """(round trip ns, core share) of two of fastrnn's threads, right now."""
    return round_trip_ns(threads), core_share(threads)


def ceilings(threads):
    """{"numpy": NumPy's SGEMM, "packed": fastrnn's packed GEMM} in GFLOP/s."""
    return {"numpy": sgemm_gflops(threads), "packed": packed_gemm_gflops(threads)}


# ---------------------------------------------------------------------- peers

class _Impl:
    name = None

    def prepare(self, layer, x, mode):
        """Return a zero-argument callable, or None when this peer can't run it."""
        raise NotImplementedError


class _Fastrnn(_Impl):
    name = "fastrnn"

    def prepare(self, layer, x, mode):
        if mode == "inference":
            return lambda: layer(x)
        dy = np.ones((x.shape[0], x.shape[1], layer.hidden_size), layer.dtype)

        def train():
            _, _, cache = layer.forward_train(x)
            layer.backward(cache, dy)
        return train

    def output(self, layer, x):
        return layer(x)[0]


class _Reference(_Fastrnn):
    name = "numpy-ref"

    def __init__(self, max_flops):
        self.max_flops = max_flops

    def prepare(self, layer, x, mode):
        T, B, _ = x.shape
        if _flops(layer.mode.upper(), mode, T, B, layer.input_size, layer.hidden_size) \
                > self.max_flops:
            return None       # too slow to be worth the minutes; the table says "-"
        ref = type(layer)(**{**layer._config(), "backend": "reference"})
        ref.load_state_dict(layer.params)
        return super().prepare(ref, x, mode)


class _Torch(_Impl):
    name = "torch"

    def __init__(self, threads):
        import torch
        self.torch = torch
        torch.set_num_threads(threads)

    def prepare(self, layer, x, mode):
        torch = self.torch
        module = layer.to_torch()
        xt = torch.from_numpy(x)
        if mode == "inference":
            def infer():
                with torch.inference_mode():
                    return module(xt)[0]
            with torch.inference_mode():
                self.last = module(xt)[0].numpy()
            return infer
        xg = xt.clone().requires_grad_(True)

        def train():
            y = module(xg)[0]
            y.backward(torch.ones_like(y))
        with torch.inference_mode():
            self.last = module(xt)[0].numpy()
        return train


class _Onnxruntime(_Impl):
    name = "onnxruntime"

    def __init__(self, threads):
        import onnxruntime
        self.ort = onnxruntime
        self.threads = threads

    def prepare(self, layer, x, mode):
        if mode != "inference" or layer.dtype != np.float32:
            return None
        from fastrnn.interop import to_onnx
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        sess = self.ort.InferenceSession(to_onnx(layer).SerializeToString(), opts,
                                         providers=["CPUExecutionProvider"])
        feed = {"x": x}
        y = sess.run(None, feed)[0]                       # (T, D, B, H)
        T, D, B, H = y.shape
        self.last = y.transpose(0, 2, 1, 3).reshape(T, B, D * H)
        return lambda: sess.run(None, feed)


def _available_peers(threads, reference_max_flops):
    peers = [_Reference(reference_max_flops)]
    for cls in (_Torch, _Onnxruntime):
        try:
            peers.append(cls(threads))
        except ImportError:
            pass
    return peers


# ------------------------------------------------------------------------ run

def run(grid, threads=None, min_time=0.05, repeats=3, reference_max_flops=2e9,
        progress=True, out=sys.stdout):
    """Time every configuration of ``grid``; returns a list of result dicts."""
    threads = threads or fastrnn.get_num_threads()
    fastrnn.set_num_threads(threads)
    ceiling = ceilings(threads)
    place_start = placement(threads)
    peers = _available_peers(threads, reference_max_flops)
    inputs = grid.get("inputs") or (None,)          # None: input = hidden
    configs = [(c, m, b, h, i) for c in grid["cells"] for m in grid["modes"]
               for b in grid["batches"] for h in grid["hiddens"] for i in inputs]
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(configs), file=sys.stderr, desc="bench", leave=False)
        except ImportError:
            bar = None
    results = []
    rng = np.random.default_rng(0)
    T = grid["steps"]
    for cell, mode, B, H, I in configs:
        I = H if I is None else I
        layer = getattr(fastrnn, cell)(I, H, seed=0)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        ours = _Fastrnn()
        y_ours = ours.output(layer, x)
        fns = {"fastrnn": ours.prepare(layer, x, mode)}
        notes = {}
        for peer in peers:
            fn = peer.prepare(layer, x, mode)
            if fn is None:
                continue
            y_peer = getattr(peer, "last", None)
            if y_peer is not None and not np.allclose(y_peer, y_ours, rtol=1e-3, atol=1e-4):
                notes[peer.name] = "MISMATCH"
                continue
            fns[peer.name] = fn
        times = {name: [] for name in fns}
        trip, share = placement(threads)
        # Short calls are the most exposed to a neighbour's burst, and cheap to repeat.
        n_blocks = 2 * repeats if _flops(cell, mode, T, B, I, H) < SHORT_FLOPS else repeats
        # onnxruntime's prepare() ran it once, to check its outputs.
        settle = SETTLE_AFTER_SPINNER_S if "onnxruntime" in fns else SETTLE_S
        for _ in range(n_blocks):                     # interleaved repetitions
            for name, fn in fns.items():
                times[name].append(time_calls(fn, min_time, settle))
                settle = SETTLE_AFTER_SPINNER_S if name == "onnxruntime" else SETTLE_S
        # The best block of each: on a shared machine, interference only ever adds time.
        best = {name: float(np.min(v)) for name, v in times.items()}
        tracemalloc.start()
        fns["fastrnn"]()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        flops = _flops(cell, mode, T, B, I, H)
        gflops = flops / best["fastrnn"] / 1e9
        results.append(dict(cell=cell, mode=mode, batch=B, hidden=H, input=I, steps=T,
                            threads=threads, times_s=best, notes=notes,
                            fastrnn_gflops=gflops, fastrnn_peak_mb=peak / 2 ** 20,
                            round_trip_ns=trip, core_share=share))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    # The ceilings are the best the machine did: measured again at the end, so that
    # a neighbour's burst during the first measurement does not lower them.
    end = ceilings(threads)
    ceiling = {k: max(v, end[k]) for k, v in ceiling.items()}
    place_end = placement(threads)
    for r in results:
        r["run_round_trip_ns"] = (place_start[0], place_end[0])
        r["run_core_share"] = (place_start[1], place_end[1])
        r["sgemm_gflops"] = ceiling["numpy"]
        r["packed_gemm_gflops"] = ceiling["packed"]
        r["ceiling_gflops"] = max(ceiling.values())
    fastrnn.set_num_threads(None)
    return results


def format_round_trip(ns):
    return "-" if ns is None else f"{ns:.0f}"


def format_core_share(share):
    return "-" if share is None else f"{share:.2f}"


def format_table(results):
    peers = []
    for r in results:
        for name in list(r["times_s"]) + list(r["notes"]):
            if name != "fastrnn" and name not in peers:
                peers.append(name)
    with_inputs = any(r["input"] != r["hidden"] for r in results)
    with_trips = any(r.get("round_trip_ns") is not None for r in results)
    head = ["cell", "mode", "B", "H"] + (["I"] if with_inputs else []) + \
        ["fastrnn ms", "GFLOP/s", "%peak", "peak MB"] + \
        (["rt ns", "core"] if with_trips else [])
    for p in peers:
        head += [f"{p} ms", "ratio"]
    rows = [head]
    for r in results:
        t = r["times_s"]
        row = [r["cell"], r["mode"][:5], str(r["batch"]), str(r["hidden"])] + \
            ([str(r["input"])] if with_inputs else []) + [
               f"{t['fastrnn'] * 1e3:.3f}", f"{r['fastrnn_gflops']:.1f}",
               f"{100 * r['fastrnn_gflops'] / r['ceiling_gflops']:.0f}%",
               f"{r['fastrnn_peak_mb']:.1f}"] + \
            ([format_round_trip(r.get("round_trip_ns")), format_core_share(r.get("core_share"))]
             if with_trips else [])
        for p in peers:
            if p in t:
                row += [f"{t[p] * 1e3:.3f}", f"{t['fastrnn'] / t[p]:.2f}"]
            else:
                row += [r["notes"].get(p, "-"), ""]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# The targets fastrnn is built to: ratios of its time to a peer's, and a share of the
# ceiling at the large shapes.
INFERENCE_RATIO = 1.0            # at most the faster peer's time
BATCH1_RATIO = 0.5               # twice as fast as the faster peer
BATCH1_MAX_HIDDEN = 512
TRAINING_RATIO = 0.8             # against PyTorch's forward + backward
LARGE_SHARE = 0.85               # of the run's ceiling
LARGE_MIN_BATCH, LARGE_MIN_HIDDEN = 32, 512


def _label(r):
    return (f"{r['cell']} B{r['batch']} H{r['hidden']}"
            + (f" I{r['input']}" if r["input"] != r["hidden"] else ""))


def _ratio_target(name, rows, peers, bound, weights_rate=False):
    """Rows whose time over the faster of ``peers`` is at most ``bound``; for each row
    above it, the rate it would take to meet it: GFLOP/s (and its share of the run's
    ceiling), or with ``weights_rate`` the GB/s at which the recurrent weights would
    have to be read, every step reading all of them (batch 1: the floor is memory,
    not arithmetic)."""
    held, total, misses = 0, 0, []
    for r in rows:
        timed = [(r["times_s"][p], p) for p in peers if p in r["times_s"]]
        if not timed:
            continue
        peer_s, peer = min(timed)
        total += 1
        ratio = r["times_s"]["fastrnn"] / peer_s
        if ratio <= bound:
            held += 1
            continue
        target_s = bound * peer_s
        miss = dict(row=_label(r), mode=r["mode"], peer=peer, ratio=ratio)
        flops = _flops(r["cell"], r["mode"], r["steps"], r["batch"], r["input"], r["hidden"])
        miss["needs_gflops"] = flops / target_s / 1e9
        miss["needs_share"] = miss["needs_gflops"] / r["ceiling_gflops"]
        if weights_rate:
            weight_bytes = CELLS[r["cell"]] * r["hidden"] ** 2 * 4 * r["steps"]
            miss["needs_weights_gbs"] = weight_bytes / target_s / 1e9
        misses.append(miss)
    return dict(target=name, bound=bound, held=held, rows=total, misses=misses)


def targets(results):
    """How the run stands against the targets fastrnn is built to (README,
    "Performance"): per target, the rows that hold it and, for each that does not,
    what meeting it would take."""
    infer = [r for r in results if r["mode"] == "inference"]
    peers = ("torch", "onnxruntime")
    out = [
        _ratio_target(f"inference <= {INFERENCE_RATIO}x the faster peer", infer, peers,
                      INFERENCE_RATIO),
        _ratio_target(f"batch-1 inference <= {BATCH1_RATIO}x the faster peer (hidden <= "
                      f"{BATCH1_MAX_HIDDEN})",
                      [r for r in infer if r["batch"] == 1
                       and r["hidden"] <= BATCH1_MAX_HIDDEN], peers, BATCH1_RATIO,
                      weights_rate=True),
        _ratio_target(f"training <= {TRAINING_RATIO}x PyTorch",
                      [r for r in results if r["mode"] == "training"], ("torch",),
                      TRAINING_RATIO),
    ]
    large = [r for r in results if r["batch"] >= LARGE_MIN_BATCH
             and r["hidden"] >= LARGE_MIN_HIDDEN]
    below = [dict(row=_label(r), mode=r["mode"],
                  share=r["fastrnn_gflops"] / r["ceiling_gflops"]) for r in large
             if r["fastrnn_gflops"] < LARGE_SHARE * r["ceiling_gflops"]]
    # The ceiling is the higher of the two GEMMs; NumPy's SGEMM alone is the lower bar.
    held_sgemm = sum(r["fastrnn_gflops"] >= LARGE_SHARE * r["sgemm_gflops"] for r in large)
    out.append(dict(target=f">= {100 * LARGE_SHARE:.0f}% of the ceiling (batch >= "
                           f"{LARGE_MIN_BATCH}, hidden >= {LARGE_MIN_HIDDEN})",
                    bound=LARGE_SHARE, held=len(large) - len(below), rows=len(large),
                    held_of_sgemm=held_sgemm, misses=below))
    return [t for t in out if t["rows"]]


def format_targets(summary):
    lines = ["Targets: the rows that meet each, and for each row that does not, what "
             "meeting it would take (the GEMMs' GFLOP/s and their share of the ceiling; at "
             "batch 1 the rate of reading all the recurrent weights at every step)"]
    for t in summary:
        lines.append(f"  {t['target']}: {t['held']} of {t['rows']}"
                     + (f" (of NumPy's SGEMM: {t['held_of_sgemm']} of {t['rows']})"
                        if "held_of_sgemm" in t else ""))
        for m in t["misses"]:
            if "share" in m:
                lines.append(f"    {m['row']} {m['mode']}: {100 * m['share']:.1f}%")
                continue
            need = (f"needs {m['needs_weights_gbs']:.0f} GB/s of weights"
                    if "needs_weights_gbs" in m else
                    f"needs {m['needs_gflops']:.0f} GFLOP/s, "
                    f"{100 * m['needs_share']:.0f}% of the ceiling")
            lines.append(f"    {m['row']} {m['mode']}: {m['ratio']:.2f}x {m['peer']} ({need})")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, mode in zip(axes, ("inference", "training")):
        labels, ratios = [], {}
        for r in results:
            if r["mode"] != mode:
                continue
            labels.append(f"{r['cell']}\nB{r['batch']} H{r['hidden']}"
                          + (f" I{r['input']}" if r["input"] != r["hidden"] else ""))
            for peer, t in r["times_s"].items():
                if peer != "fastrnn":
                    ratios.setdefault(peer, []).append(r["times_s"]["fastrnn"] / t)
        for peer, vals in ratios.items():
            if len(vals) == len(labels):
                ax.plot(range(len(labels)), vals, "o-", label=peer)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_yscale("log")
        ax.set_title(f"{mode}: fastrnn time / peer time (lower is better)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fastrnn bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small grid, under a minute")
    ap.add_argument("--threads", type=int, default=None, help="threads for everyone")
    ap.add_argument("--cells", default=None, help="comma-separated subset of LSTM,GRU,RNN")
    ap.add_argument("--modes", default=None, help="inference,training")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes")
    ap.add_argument("--hiddens", default=None, help="comma-separated hidden sizes")
    ap.add_argument("--inputs", default=None,
                    help="comma-separated input sizes (default: input = hidden)")
    ap.add_argument("--steps", type=int, default=None, help="sequence length T")
    ap.add_argument("--repeats", type=int, default=None,
                    help="interleaved repetitions (default 3, with --quick 2)")
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument("--plot", default=None, help="draw the ratios into this PNG")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-scaling", action="store_true",
                    help="skip the section on how the cost grows (T, B, memory, threads)")
    args = ap.parse_args(argv)
    grid = dict(QUICK_GRID if args.quick else DEFAULT_GRID)
    if args.cells:
        grid["cells"] = tuple(c.strip().upper() for c in args.cells.split(","))
    if args.modes:
        grid["modes"] = tuple(m.strip() for m in args.modes.split(","))
    if args.batches:
        grid["batches"] = tuple(int(b) for b in args.batches.split(","))
    if args.hiddens:
        grid["hiddens"] = tuple(int(h) for h in args.hiddens.split(","))
    if args.inputs:
        grid["inputs"] = tuple(int(i) for i in args.inputs.split(","))
    if args.steps:
        grid["steps"] = args.steps
    unknown = [c for c in grid["cells"] if c not in CELLS] + \
        [m for m in grid["modes"] if m not in ("inference", "training")]
    if unknown:
        ap.error(f"unknown cell or mode {', '.join(unknown)}: cells are "
                 f"{', '.join(CELLS)}, modes inference, training")
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    results = run(grid, threads=args.threads, repeats=repeats,
                  progress=not args.no_progress)
    threads = results[0]["threads"] if results else args.threads
    print(f"fastrnn {fastrnn.__version__} bench, {time.strftime('%Y-%m-%d')}, "
          f"{platform.processor() or platform.machine()}, {threads} threads, float32, "
          f"T={grid['steps']}, " + (f"inputs {', '.join(map(str, grid['inputs']))}"
                                    if grid.get("inputs") else "input = hidden"))
    if results:
        r = results[0]
        print(f"GEMM ceiling (float32 1024^3, {threads} threads, best of the run's start "
              f"and end): NumPy SGEMM {r['sgemm_gflops']:.1f} GFLOP/s, fastrnn's packed "
              f"GEMM {r['packed_gemm_gflops']:.1f} GFLOP/s; %peak is against the higher")
        start, end = r["run_round_trip_ns"]
        if start is not None:
            share_start, share_end = r["run_core_share"]
            print(f"Where the host put two of the threads, measured before each row: the "
                  f"round trip of a cache line between them (rt ns; {format_round_trip(start)} "
                  f"at the start, {format_round_trip(end)} at the end) and the share of a core "
                  f"each gets when both compute (core; {format_core_share(share_start)}, "
                  f"{format_core_share(share_end)}). Every barrier of a team pays the round "
                  f"trip; at a core share near 0.5 the two threads share one core")
    print(format_table(results))
    summary = targets(results)
    if summary:
        print()
        print(format_targets(summary))
    scaling = None
    if not args.no_scaling and results:
        from fastrnn import _scaling
        scaling = _scaling.run(grid["cells"], grid["modes"], threads, quick=args.quick)
        print()
        print(_scaling.format_report(scaling))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(grid=grid, results=results, targets=summary, scaling=scaling),
                      f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return 0
