"""Latency of one streamed time step, Python call included, beside the peers.

    python bench/streaming.py [--input 64] [--hidden 128] [--batch 1] [--gap-us 0]

For each cell: fastrnn's Stream.step (with out=, and returning a fresh array),
torch's RNNCell/LSTMCell/GRUCell under inference_mode, onnxruntime running the
layer on a T=1 sequence with the states fed back, and NumPy's bare GEMV of the
recurrent weights (the floor of a Python-level step).  Interleaved repetitions;
medians in microseconds.

Steps back to back are the best case: the weights stay in the cores' caches and
the team's threads spin, ready.  A service steps when its data comes, doing its
own work in between; ``--gap-us G`` spends G microseconds busy in Python before
each step and times the steps alone (median and 90th percentile).
"""

import argparse
import time

import numpy as np

import fastrnn
from fastrnn._bench import time_calls


def peers(cell, layer, x_t, B):
    out = {}
    y = np.empty((B, layer.output_size), np.float32)
    stream = layer.stream(B)
    out["fastrnn step(out=)"] = lambda: stream.step(x_t, out=y)
    out["fastrnn step"] = lambda: stream.step(x_t)
    w = np.ascontiguousarray(np.concatenate(
        [layer.params["weight_ih_l0"], layer.params["weight_hh_l0"]], axis=1))
    xh = np.ones((w.shape[1], B), np.float32)
    out["numpy GEMV"] = lambda: w @ xh
    try:
        import torch
        torch.set_num_threads(1)
        module = layer.to_torch()
        cls = {"LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell, "RNN": torch.nn.RNNCell}[cell]
        tcell = cls(layer.input_size, layer.hidden_size)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(tcell, name).copy_(getattr(module, name + "_l0"))
        xt = torch.from_numpy(x_t)
        state = [torch.zeros(B, layer.hidden_size)]
        if cell == "LSTM":
            state = [(torch.zeros(B, layer.hidden_size), torch.zeros(B, layer.hidden_size))]

        def torch_step():
            with torch.inference_mode():
                state[0] = tcell(xt, state[0])
        out["torch cell"] = torch_step
    except ImportError:
        pass
    try:
        import onnxruntime as ort
        from onnx import helper, TensorProto
        from fastrnn.interop import to_onnx
        model = to_onnx(layer)
        g = model.graph
        node = g.node[0]
        H = layer.hidden_size
        node.input.extend(["", "h0"] + (["c0"] if cell == "LSTM" else []))
        node.output.extend(["h_n"] + (["c_n"] if cell == "LSTM" else []))
        g.input.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, B, H]))
        g.output.append(helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [1, B, H]))
        if cell == "LSTM":
            g.input.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, B, H]))
            g.output.append(helper.make_tensor_value_info("c_n", TensorProto.FLOAT,
                                                          [1, B, H]))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        feed = {"x": x_t[None], "h0": np.zeros((1, B, H), np.float32)}
        if cell == "LSTM":
            feed["c0"] = np.zeros((1, B, H), np.float32)

        def ort_step():
            res = sess.run(None, feed)
            feed["h0"] = res[1]
            if cell == "LSTM":
                feed["c0"] = res[2]
        out["onnxruntime T=1"] = ort_step
    except ImportError:
        pass
    return out


def time_spaced(fn, gap_s, n):
    """Seconds of each of n calls of ``fn``, each after gap_s seconds of busy work."""
    out = np.empty(n)
    for i in range(n):
        resume = time.perf_counter() + gap_s
        while time.perf_counter() < resume:
            pass
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gap-us", type=float, default=0.0,
                    help="busy microseconds before each step (0: back to back)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    spaced = args.gap_us > 0
    how = (f"{args.gap_us:g} us of busy work before each step; median / 90th percentile "
           f"of {args.repeats} interleaved blocks of 200 steps" if spaced else
           f"median of {args.repeats} interleaved blocks")
    print(f"one step, input {args.input}, hidden {args.hidden}, batch {args.batch}, "
          f"float32; {how}, microseconds")
    for cell in ("LSTM", "GRU", "RNN"):
        layer = getattr(fastrnn, cell)(args.input, args.hidden, seed=0)
        x_t = rng.standard_normal((args.batch, args.input)).astype(np.float32)
        fns = peers(cell, layer, x_t, args.batch)
        times = {k: [] for k in fns}
        for _ in range(args.repeats):
            for k, fn in fns.items():
                if spaced:
                    times[k].extend(time_spaced(fn, args.gap_us * 1e-6, 200))
                else:
                    times[k].append(time_calls(fn, 0.1))
        if spaced:
            row = "  ".join(f"{k} {np.median(v) * 1e6:6.1f} / {np.percentile(v, 90) * 1e6:6.1f}"
                            for k, v in times.items())
        else:
            row = "  ".join(f"{k} {np.median(v) * 1e6:7.2f}" for k, v in times.items())
        print(f"{cell:>5}: {row}")


if __name__ == "__main__":
    main()
