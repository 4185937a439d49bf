"""Text classifier: Embedding(mask_zero) -> LSTM(128) (or GRU) -> Dense(softmax), Adam.

    python examples/text_classifier.py [--cell gru] [--epochs 6] [--quick]

The task is synthetic but needs memory of order: each sequence of 10..50 tokens
(pre-padded with 0, as Keras' ``pad_sequences`` pads) holds two different "signal"
tokens among noise tokens, and the class is the signal that comes *first*.  A
bag of words cannot beat 50%; the recurrent layer must remember which signal it
saw first and ignore the second.  Target: validation accuracy >= 0.9.

fastrnn trains the model with ``fastrnn.fit``; then its PyTorch twin (the same
initial weights, via ``Sequential.to_torch()``) trains with ``torch.optim.Adam`` on
the same batches.  Both are timed per epoch and evaluated on the same data.
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

NUM_CLASSES = 4          # signal tokens 1..4; noise tokens above them
VOCAB = 200
MAX_LEN = 50
TARGET_ACCURACY = 0.9


def make_dataset(n, rng):
    """Pre-padded token sequences (n, MAX_LEN) and their classes (n,)."""
    tokens = np.zeros((n, MAX_LEN), np.int64)
    labels = np.empty(n, np.int64)
    for i in range(n):
        length = rng.integers(10, MAX_LEN + 1)
        seq = rng.integers(NUM_CLASSES + 1, VOCAB, length)
        first, second = rng.choice(NUM_CLASSES, 2, replace=False) + 1
        where = np.sort(rng.choice(length, 2, replace=False))
        seq[where] = first, second
        tokens[i, MAX_LEN - length:] = seq
        labels[i] = first - 1
    return tokens, labels


def build_model(cell, seed):
    recurrent = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[cell]
    return fastrnn.Sequential([
        fastrnn.Embedding(VOCAB, 32, mask_zero=True, seed=seed),
        recurrent(32, 128, batch_first=True, seed=seed + 1),
        fastrnn.FinalState(),
        fastrnn.Dense(128, NUM_CLASSES, activation="softmax", seed=seed + 2),
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--quick", action="store_true",
                        help="a small run for the tests (GRU, 2000 samples, 3 epochs, lr 1e-2)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.quick:
        args.cell, args.samples, args.epochs, args.lr = "gru", 2000, 3, 1e-2

    rng = np.random.default_rng(args.seed)
    x, y = make_dataset(args.samples, rng)
    x_val, y_val = make_dataset(args.samples // 4, rng)
    model = build_model(args.cell, args.seed)
    twin = None if args.no_torch else torch_twin(model)
    print(f"text classifier: {args.cell.upper()}(128), {len(x)} sequences of 10..{MAX_LEN} "
          f"tokens, {args.epochs} epochs of batch {args.batch_size}")

    history = fastrnn.fit(model, x, y, loss="cross_entropy",
                          optimizer=Adam(model.params, lr=args.lr), epochs=args.epochs,
                          batch_size=args.batch_size, validation_data=(x_val, y_val),
                          seed=args.seed, progress=not args.quick)
    rows = {"fastrnn": (history["epoch_time"], history["val_loss"][-1],
                        history["val_accuracy"][-1])}
    if twin is not None:
        times = train_torch(twin, x, y, loss="cross_entropy", lr=args.lr, epochs=args.epochs,
                            batch_size=args.batch_size, seed=args.seed, logits=True)
        rows["torch"] = (times, *evaluate_torch(twin, x_val, y_val, loss="cross_entropy",
                                                logits=True))
    report(rows, "accuracy")
    reached = history["val_accuracy"][-1] >= TARGET_ACCURACY
    print(f"target val_accuracy >= {TARGET_ACCURACY}: {'reached' if reached else 'NOT reached'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
