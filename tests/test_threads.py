"""Thread counts, OpenMP and BLAS configuration, and calls from several Python threads."""

import io
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastrnn
from fastrnn import _config, _threads

from conftest import (CELLS, DTYPES, assert_close, assert_same_structure_equal, cell_params,
                      random_hx, random_lengths, random_like_outputs, train_step)

# Big enough that kernel_threads() hands the kernels two threads.
T, B, I, H = 20, 16, 32, 64


def blas_threads():
    from threadpoolctl import threadpool_info
    return [(d["filepath"], d["num_threads"]) for d in threadpool_info()
            if d["user_api"] == "blas"]


def run_everything(layer, x, hx, lengths, dy, dh):
    """Inference and training results of one call, as one nested tuple."""
    inference = layer(x, hx, lengths)
    training = train_step(layer, x, hx, lengths, dy, dh)
    return inference, training


def workload(cell, dtype, seed, bidirectional=True):
    rng = np.random.default_rng(seed)
    layer = cell.make(I, H, num_layers=2, bidirectional=bidirectional, dtype=dtype, seed=seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    hx = random_hx(rng, layer, B)
    lengths = random_lengths(rng, B, T)
    y, h_n = layer(x, hx, lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    return layer, (x, hx, lengths, dy, dh)


@pytest.mark.usefixtures("default_threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_one_and_two_threads_agree(cell, dtype):
    fastrnn.set_num_threads(2)
    assert _config.kernel_threads(B, cell.gate_count, H, I) == 2, \
        "the workload is too small to exercise two threads"
    layer, args = workload(cell, dtype, seed=1)
    fastrnn.set_num_threads(1)
    one = run_everything(layer, *args)
    fastrnn.set_num_threads(2)
    two = run_everything(layer, *args)
    assert_close(two, one, dtype)


@pytest.mark.usefixtures("default_threads")
@pytest.mark.parametrize("hidden", [33, 40, 64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", cell_params())
def test_two_threads_match_the_reference(cell, dtype, hidden):
    """The threaded kernels, on hidden sizes that split unevenly between threads."""
    fastrnn.set_num_threads(2)
    assert _config.kernel_threads(B, cell.gate_count, hidden, I) == 2
    rng = np.random.default_rng(hidden)
    auto, ref = (cell.make(I, hidden, bidirectional=True, num_layers=2, dtype=dtype,
                           backend=b, seed=5) for b in ("auto", "reference"))
    x = rng.standard_normal((T, B, I)).astype(dtype)
    hx = random_hx(rng, auto, B)
    lengths = random_lengths(rng, B, T)
    y, h_n = ref(x, hx, lengths)
    dy, dh = random_like_outputs(rng, y, h_n)
    assert_close(run_everything(auto, x, hx, lengths, dy, dh),
                 run_everything(ref, x, hx, lengths, dy, dh), dtype)


@pytest.mark.usefixtures("default_threads")
@pytest.mark.parametrize("cell", cell_params())
def test_repeated_calls_with_two_threads_are_bitwise_identical(cell):
    """A static split of the work: the rounding is the same from call to call."""
    fastrnn.set_num_threads(2)
    layer, args = workload(cell, "float32", seed=2)
    first = run_everything(layer, *args)
    for _ in range(3):
        assert_same_structure_equal(run_everything(layer, *args), first)


@pytest.mark.usefixtures("default_threads")
def test_set_num_threads_round_trip():
    default = fastrnn.get_num_threads()
    for n in (1, 2, 3):
        fastrnn.set_num_threads(n)
        assert fastrnn.get_num_threads() == (n if _threads.openmp_enabled() else 1)
    fastrnn.set_num_threads(None)
    assert fastrnn.get_num_threads() == default
    with pytest.raises(ValueError):
        fastrnn.set_num_threads(0)
    assert fastrnn.get_num_threads() == default


@pytest.mark.usefixtures("default_threads")
def test_default_is_openmp_max_threads():
    fastrnn.set_num_threads(None)
    if not _threads.openmp_enabled():
        assert fastrnn.get_num_threads() == 1
        return
    assert fastrnn.get_num_threads() == _threads.openmp_max_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        assert fastrnn.get_num_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("omp_num_threads", ["1", "3"])
def test_omp_num_threads_is_respected(omp_num_threads):
    env = dict(os.environ, OMP_NUM_THREADS=omp_num_threads)
    code = "import fastrnn, fastrnn._threads as t; print(fastrnn.get_num_threads(), " \
           "t.openmp_enabled())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(
                             os.path.abspath(fastrnn.__file__))))
    n, openmp = out.stdout.split()
    assert int(n) == (int(omp_num_threads) if openmp == "True" else 1)


def test_core_round_trip():
    """Two threads bounce a cache line; one thread (a thread limit of 1, one
    processor, or no OpenMP) gives None at once instead of waiting for a partner
    that never comes."""
    ns = _threads.core_round_trip_ns(500)
    if _threads.openmp_enabled() and len(os.sched_getaffinity(0)) > 1:
        assert 1 < ns < 1e6
    else:
        assert ns is None
    with pytest.raises(ValueError, match="rounds"):
        _threads.core_round_trip_ns(0)
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    code = "import fastrnn._threads as t; print(t.core_round_trip_ns(100))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=60, cwd=os.path.dirname(
                             os.path.dirname(os.path.abspath(fastrnn.__file__))))
    assert out.stdout.strip() == "None"


def test_team_compute_share():
    """Two threads' FMA rate against one's: a plausible share here (near 1 on cores of
    their own, near 0.5 on one core: which one, the host decides), and None where the
    process has one processor, whose two threads would only take turns."""
    cwd = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    with pytest.raises(ValueError, match="iters"):
        _threads.team_compute_share(0)
    if not _threads.openmp_enabled() or len(os.sched_getaffinity(0)) < 2:
        assert _threads.team_compute_share() is None
        return
    assert 0.2 < max(_threads.team_compute_share(300000) for _ in range(3)) < 2
    code = ("import os; os.sched_setaffinity(0, {0}); import fastrnn._threads as t; "
            "print(t.team_compute_share())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, cwd=cwd)
    assert out.stdout.strip() == "None"      # one processor: no team is timed


@pytest.mark.usefixtures("default_threads")
def test_threadpool_limits_are_respected():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fastrnn.set_num_threads(None)
    default = fastrnn.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        assert fastrnn.get_num_threads() == 1
        assert _config.kernel_threads(B, 4, H, I) == 1
        # and the layers still work inside the limit
        layer, args = workload(CELLS[3], "float64", seed=3)
        inside = run_everything(layer, *args)
    assert fastrnn.get_num_threads() == default
    assert_close(run_everything(layer, *args), inside, "float64")


def test_layer_calls_restore_blas_threads():
    before = blas_threads()
    layer, args = workload(CELLS[5], "float64", seed=4)
    run_everything(layer, *args)
    assert blas_threads() == before


def test_show_config(capsys):
    fastrnn.show_config()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"fastrnn {fastrnn.__version__}"
    openmp = [ln for ln in lines if ln.startswith("OpenMP:")]
    assert len(openmp) == 1
    assert openmp[0].split(":", 1)[1].strip().startswith(
        "on" if _threads.openmp_enabled() else "off")
    threads = [ln for ln in lines if ln.startswith("threads:")]
    assert len(threads) == 1 and f"fastrnn {fastrnn.get_num_threads()}" in threads[0]
    blas = [i for i, ln in enumerate(lines) if ln.startswith("BLAS")]
    assert len(blas) == 1
    described = lines[blas[0] + 1:]
    assert described and all(ln.startswith("  ") for ln in described)
    assert any(name in out.lower() for name in ("openblas", "mkl", "blis", "accelerate"))
    assert any(ln.startswith("compiler:") for ln in lines)
    assert any(ln.startswith("compile flags:") for ln in lines)


def test_show_config_to_a_file():
    buf = io.StringIO()
    fastrnn.show_config(file=buf)
    assert buf.getvalue().startswith(f"fastrnn {fastrnn.__version__}")


# -------------------------------------------------------- several Python threads

def test_concurrent_calls_match_serial():
    """Different layers and one shared layer, called from four Python threads at once
    (each call running its own two-thread OpenMP team), give the serial answers.

    "To rounding": from a thread other than the main one, scipy's OpenBLAS ignores
    the request for one thread (threadpoolctl reads back its old count), and its
    threaded GEMM rounds differently from its serial one."""
    jobs = [workload(c, dt, seed=10 + k)
            for k, (c, dt) in enumerate((c, dt) for c in CELLS if not c.proj for dt in DTYPES)]
    shared_layer, _ = jobs[0]
    rng = np.random.default_rng(99)
    for _ in range(4):               # the same layer, other inputs
        x = rng.standard_normal((T, B, I)).astype(shared_layer.dtype)
        jobs.append((shared_layer, (x, None, random_lengths(rng, B, T), None, None)))
    blas_before = blas_threads()

    serial = [run_everything(layer, *args) for layer, args in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            futures = [pool.submit(run_everything, layer, *args) for layer, args in jobs]
            for (layer, _), future, expected in zip(jobs, futures, serial):
                assert_close(future.result(), expected, layer.dtype)
    assert blas_threads() == blas_before


@pytest.mark.usefixtures("default_threads")
def test_kernels_release_the_gil():
    """While a long kernel call runs, another Python thread keeps running."""
    fastrnn.set_num_threads(1)
    layer = fastrnn.LSTM(64, 128, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((600, 16, 64))
    layer(x[:5])
    stamps, stop = [], threading.Event()

    def tick():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        time.sleep(0.01)
        t0 = time.perf_counter()
        layer(x)
        t1 = time.perf_counter()
    finally:
        stop.set()
        ticker.join()
    during = np.array([s for s in stamps if t0 <= s <= t1])
    longest_gap = np.diff(np.concatenate([[t0], during, [t1]])).max()
    assert t1 - t0 > 0.05, "the call is too short to tell"
    assert longest_gap < 0.25 * (t1 - t0), \
        f"the other thread stalled {longest_gap:.3f}s of a {t1 - t0:.3f}s call"
