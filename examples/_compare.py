"""Shared by the examples: train the PyTorch twin of a fastrnn model on the same
batches, and print both side by side."""

import statistics
import time

import numpy as np

from fastrnn.training import minibatches


def add_common_arguments(parser):
    """--threads, --no-torch and --seed, shared by the examples."""
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for fastrnn and torch alike (default: their own)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch run")
    parser.add_argument("--seed", type=int, default=0)


def set_threads(threads):
    """Give fastrnn, the BLAS libraries (NumPy's and SciPy's) and torch the same
    thread count (None: leave them alone)."""
    if threads is None:
        return
    import fastrnn
    from threadpoolctl import threadpool_limits
    fastrnn.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def torch_twin(model):
    """``model.to_torch()`` (its initial weights), or None without torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("(torch is not installed: no comparison)")
        return None
    return model.to_torch()


def torch_loss(name, out, target):
    """The torch loss matching fastrnn's "cross_entropy" or "mse" (mean reduction)."""
    import torch.nn.functional as F
    if name == "cross_entropy":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
    return F.mse_loss(out, target.reshape(out.shape))


def train_torch(module, x, y, *, loss, lr, epochs, batch_size, seed, logits=False):
    """Adam on ``module`` over the batches ``fastrnn.fit`` draws with the same seed;
    returns the seconds of each epoch."""
    import torch
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    x_all, y_all = torch.from_numpy(x), torch.from_numpy(y)
    module.train()
    epoch_times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for index in minibatches(len(x), batch_size, rng):
            rows = torch.from_numpy(index)
            value = torch_loss(loss, module(x_all[rows], logits=logits), y_all[rows])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        epoch_times.append(time.perf_counter() - start)
    return epoch_times


def evaluate_torch(module, x, y, *, loss, logits=False):
    """(loss, metric) of the torch model: accuracy for cross-entropy, MAE for mse."""
    import torch
    module.eval()
    with torch.inference_mode():
        out = module(torch.from_numpy(x), logits=logits)
        value = float(torch_loss(loss, out, torch.from_numpy(y)))
        out = out.numpy()
    if loss == "cross_entropy":
        return value, float(np.mean(out.argmax(-1) == y))
    return value, float(np.mean(np.abs(out - y.reshape(out.shape))))


def report(rows, metric):
    """Print one line per framework: median time per epoch, final val loss and metric.

    ``rows`` maps a name to (epoch_times, val_loss, val_metric).
    """
    print(f"{'':10s} {'time/epoch':>11s} {'val_loss':>10s} {'val_' + metric:>14s}")
    for name, (times, val_loss, val_metric) in rows.items():
        print(f"{name:10s} {statistics.median(times):10.3f}s {val_loss:10.4f} "
              f"{val_metric:14.4f}")
    if "fastrnn" in rows and "torch" in rows:
        ratio = statistics.median(rows["fastrnn"][0]) / statistics.median(rows["torch"][0])
        print(f"time per epoch, fastrnn / torch: {ratio:.2f}")
