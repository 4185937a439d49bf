"""Character language model: Embedding -> LSTM(128) -> Linear over the characters, Adam.

    python examples/char_lm.py [--kb 200] [--epochs 10] [--quick]

The text is the Python standard library's own sources (found on every machine
that runs this script): a few well-known modules, read in a fixed order up to
``--kb`` kilobytes.  Windows of 64 characters are the inputs, the same windows
shifted by one the targets; the loss is the per-character cross-entropy (in
nats).  Predicting from character frequencies alone gives about 3.2 nats.
Target: validation loss <= 2.0 nats per character (<= 2.6 for --quick).

fastrnn trains the model with ``fastrnn.fit``; then its PyTorch twin (the same
initial weights) trains on the same batches.  The fastrnn model then writes a
sample, one character at a time.
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

MODULES = ("textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py", "heapq.py",
           "colorsys.py", "string.py", "keyword.py", "contextlib.py", "functools.py",
           "argparse.py", "typing.py")
SEQ_LEN = 64
TARGET_LOSS = {"full": 2.0, "quick": 2.6}


def load_text(kilobytes):
    """The first ``kilobytes`` KB of MODULES (then of the other stdlib modules)."""
    stdlib = os.path.dirname(os.__file__)
    names = list(MODULES) + sorted(set(os.listdir(stdlib)) - set(MODULES))
    parts, size = [], 0
    for name in names:
        path = os.path.join(stdlib, name)
        if not name.endswith(".py") or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            parts.append(f.read())
        size += len(parts[-1])
        if size >= kilobytes * 1024:
            break
    text = "".join(parts)[:kilobytes * 1024]
    return "".join(c if c == "\n" or " " <= c <= "~" else "?" for c in text)


def make_windows(ids):
    """Non-overlapping windows: inputs ids[i:i+T], targets ids[i+1:i+T+1]."""
    n = (len(ids) - 1) // SEQ_LEN
    starts = np.arange(n) * SEQ_LEN
    index = starts[:, None] + np.arange(SEQ_LEN)[None, :]
    return ids[index], ids[index + 1]


def build_model(vocab_size, seed):
    return fastrnn.Sequential([
        fastrnn.Embedding(vocab_size, 32, seed=seed),
        fastrnn.LSTM(32, 128, batch_first=True, seed=seed + 1),
        fastrnn.Dense(128, vocab_size, seed=seed + 2),        # logits over characters
    ])


def sample(model, chars, prompt, length, rng, temperature=0.8):
    """Extend ``prompt`` one character at a time, drawing from softmax(logits / T)
    of the model run on the last SEQ_LEN characters."""
    lookup = {c: i for i, c in enumerate(chars)}
    ids = [lookup[c] for c in prompt if c in lookup]
    for _ in range(length):
        logits = model(np.array([ids[-SEQ_LEN:]]))[0, -1] / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(chars), p=p / p.sum())))
    return "".join(chars[i] for i in ids)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=200, help="kilobytes of text")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sample", type=int, default=400, help="characters to sample")
    parser.add_argument("--quick", action="store_true",
                        help="a small run for the tests (24 KB, 3 epochs, lr 1e-2)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.quick:
        args.kb, args.epochs, args.lr, args.sample = 24, 3, 1e-2, 160

    text = load_text(args.kb)
    chars = sorted(set(text))
    ids = np.searchsorted(np.array(chars), np.array(list(text))).astype(np.int64)
    x_all, y_all = make_windows(ids)
    split = int(0.9 * len(x_all))
    x, y, x_val, y_val = x_all[:split], y_all[:split], x_all[split:], y_all[split:]
    model = build_model(len(chars), args.seed)
    twin = None if args.no_torch else torch_twin(model)
    print(f"character LM: Embedding({len(chars)}, 32) -> LSTM(128) -> Linear({len(chars)}), "
          f"{len(text) // 1024} KB of stdlib source, {len(x)} windows of {SEQ_LEN}, "
          f"{args.epochs} epochs of batch {args.batch_size}")

    history = fastrnn.fit(model, x, y, loss="cross_entropy",
                          optimizer=Adam(model.params, lr=args.lr), epochs=args.epochs,
                          batch_size=args.batch_size, validation_data=(x_val, y_val),
                          seed=args.seed, progress=not args.quick)
    rows = {"fastrnn": (history["epoch_time"], history["val_loss"][-1],
                        history["val_accuracy"][-1])}
    if twin is not None:
        times = train_torch(twin, x, y, loss="cross_entropy", lr=args.lr,
                            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
        rows["torch"] = (times, *evaluate_torch(twin, x_val, y_val, loss="cross_entropy"))
    report(rows, "accuracy")
    target = TARGET_LOSS["quick" if args.quick else "full"]
    reached = history["val_loss"][-1] <= target
    print(f"target val_loss <= {target} nats/char: {'reached' if reached else 'NOT reached'}")
    print("sample:")
    print(sample(model, chars, "def ", args.sample, np.random.default_rng(args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
