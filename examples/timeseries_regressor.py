"""Time-series regressor: SimpleRNN(64, return_sequences) -> SimpleRNN(32) -> Dense(1), Adam on MSE.

    python examples/timeseries_regressor.py [--cell lstm] [--plot prediction.png] [--quick]

The series is two sines of incommensurate periods plus Gaussian noise of standard
deviation 0.1; each sample is a window of 10 steps and the target is the next
value.  The noise sets the floor: no model can beat a mean squared error of
0.01.  Target: validation MSE <= 0.02 (<= 0.03 for the shorter --quick run).

fastrnn trains the model with ``fastrnn.fit``; then its PyTorch twin (the same
initial weights) trains on the same batches.  ``--plot FILE.png`` draws the
validation predictions against the truth (needs matplotlib).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastrnn                                            # noqa: E402
from fastrnn.optim import Adam                            # noqa: E402
from _compare import (add_common_arguments, evaluate_torch, report,  # noqa: E402
                      set_threads, torch_twin, train_torch)

WINDOW = 10
NOISE = 0.1
TARGET_MSE = {"full": 0.02, "quick": 0.03}


def make_series(n_points, rng):
    t = np.arange(n_points)
    clean = np.sin(2 * np.pi * t / 37.0) + 0.5 * np.sin(2 * np.pi * t / 11.3)
    return (clean + NOISE * rng.standard_normal(n_points)).astype(np.float32)


def windows(series):
    """Inputs (N, WINDOW, 1) of consecutive values and targets (N,): the next value."""
    n = len(series) - WINDOW
    index = np.arange(n)[:, None] + np.arange(WINDOW)[None, :]
    return series[index][:, :, None], series[WINDOW:]


def build_model(cell, seed):
    if cell == "rnn":
        first = fastrnn.RNN(1, 64, batch_first=True, seed=seed)
        second = fastrnn.RNN(64, 32, batch_first=True, seed=seed + 1)
    else:
        first = fastrnn.LSTM(1, 64, batch_first=True, seed=seed)
        second = fastrnn.LSTM(64, 32, batch_first=True, seed=seed + 1)
    return fastrnn.Sequential([first, second, fastrnn.FinalState(),
                               fastrnn.Dense(32, 1, seed=seed + 2)])


def plot(path, truth, fastrnn_pred, torch_pred=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    fig, ax = plt.subplots(figsize=(10, 4))
    steps = np.arange(len(truth))
    ax.plot(steps, truth, ".", color="0.6", label="truth (noisy)")
    ax.plot(steps, fastrnn_pred, label="fastrnn")
    if torch_pred is not None:
        ax.plot(steps, torch_pred, "--", label="torch")
    ax.set_xlabel("validation step")
    ax.set_ylabel("next value")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("rnn", "lstm"), default="rnn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--points", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--plot", metavar="FILE.png", help="plot predictions against truth")
    parser.add_argument("--quick", action="store_true",
                        help="a small run for the tests (4000 points, 8 epochs, lr 3e-3)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.quick:
        args.points, args.epochs, args.lr = 4000, 8, 3e-3

    rng = np.random.default_rng(args.seed)
    x_all, y_all = windows(make_series(args.points, rng))
    split = int(0.8 * len(x_all))                # train on the past, validate on the future
    x, y, x_val, y_val = x_all[:split], y_all[:split], x_all[split:], y_all[split:]
    model = build_model(args.cell, args.seed)
    twin = None if args.no_torch else torch_twin(model)
    names = {"rnn": "SimpleRNN", "lstm": "LSTM"}
    print(f"time-series regressor: {names[args.cell]}(64) -> {names[args.cell]}(32) -> "
          f"Dense(1), {len(x)} windows of {WINDOW} steps, {args.epochs} epochs of batch "
          f"{args.batch_size}")

    history = fastrnn.fit(model, x, y, loss="mse", optimizer=Adam(model.params, lr=args.lr),
                          epochs=args.epochs, batch_size=args.batch_size,
                          validation_data=(x_val, y_val), seed=args.seed,
                          progress=not args.quick)
    rows = {"fastrnn": (history["epoch_time"], history["val_loss"][-1],
                        history["val_mae"][-1])}
    torch_pred = None
    if twin is not None:
        times = train_torch(twin, x, y, loss="mse", lr=args.lr, epochs=args.epochs,
                            batch_size=args.batch_size, seed=args.seed)
        rows["torch"] = (times, *evaluate_torch(twin, x_val, y_val, loss="mse"))
        import torch
        with torch.inference_mode():
            torch_pred = twin(torch.from_numpy(x_val)).numpy()[:, 0]
    report(rows, "mae")
    target = TARGET_MSE["quick" if args.quick else "full"]
    reached = history["val_loss"][-1] <= target
    print(f"target val_loss (MSE) <= {target} (noise floor {NOISE ** 2:.2f}): "
          f"{'reached' if reached else 'NOT reached'}")
    if args.plot:
        plot(args.plot, y_val, model(x_val)[:, 0], torch_pred)
    return 0


if __name__ == "__main__":
    sys.exit(main())
