"""Batch inference beyond one process: fastrnn.dask.predict over a dask array of sequences,
and the per-Python-thread thread_limit that keeps Dask's workers from oversubscribing."""

import builtins
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import _threads
from fastrnn._config import kernel_threads, thread_limit

from conftest import CELL_BY_NAME, DTYPES, assert_close

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
import fastrnn.dask as fdask  # noqa: E402  (after the importorskip)

CASES = [CELL_BY_NAME[n] for n in ("lstm_proj", "gru", "rnn_relu", "gru_reset_before")]
needs_openmp = pytest.mark.skipif(not _threads.openmp_enabled(),
                                  reason="without OpenMP fastrnn always runs on 1 thread")


def make_layer(cell, batch_first, dtype="float64", bidirectional=True, seed=0):
    return cell.make(4, 6, num_layers=2, bidirectional=bidirectional,
                     batch_first=batch_first, dtype=dtype, seed=seed)


def sequences(rng, layer, B=11, T=7):
    shape = (B, T, layer.input_size) if layer.batch_first else (T, B, layer.input_size)
    return rng.standard_normal(shape)


def chunked(x, layer, batch_chunks):
    chunks = [-1, -1, -1]
    chunks[0 if layer.batch_first else 1] = batch_chunks
    return da.from_array(x, chunks=tuple(chunks))


def lengths_for(rng, B, T):
    lengths = rng.integers(1, T + 1, B)
    lengths[:2] = (1, T)
    return lengths


# ------------------------------------------------------------ threaded scheduler

@pytest.mark.parametrize("lengths_kind", [None, "numpy", "dask", "list"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", CASES, ids=str)
def test_predict_equals_one_call(cell, batch_first, lengths_kind, rng):
    layer = make_layer(cell, batch_first)
    x = sequences(rng, layer)
    B, T = (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])
    lengths = None if lengths_kind is None else lengths_for(rng, B, T)
    y_ref, _ = layer(x, lengths=lengths)
    arg = {None: None, "numpy": lengths, "list": None if lengths is None else list(lengths),
           "dask": None if lengths is None else da.from_array(lengths, chunks=4)}[lengths_kind]
    xd = chunked(x, layer, (4, 4, 3))
    y = fdask.predict(layer, xd, lengths=arg)
    assert isinstance(y, da.Array)
    assert y.shape == y_ref.shape and y.dtype == layer.dtype
    batch_axis = 0 if batch_first else 1
    assert y.chunks[batch_axis] == (4, 4, 3)               # the batch chunks are kept
    result = y.compute(scheduler="threads")
    assert result.dtype == layer.dtype
    assert_close(result, y_ref, layer.dtype, "y")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_chunks", [(11,), (1, 10), (5, 1, 5), (2, 2, 2, 2, 2, 1)],
                         ids=str)
def test_uneven_batch_chunks(batch_chunks, dtype, rng):
    layer = make_layer(CELL_BY_NAME["lstm"], False, dtype=dtype)
    x = sequences(rng, layer).astype(dtype)
    lengths = lengths_for(rng, 11, 7)
    y = fdask.predict(layer, chunked(x, layer, batch_chunks), lengths=lengths)
    assert y.chunks[1] == batch_chunks
    assert_close(y.compute(scheduler="threads"), layer(x, lengths=lengths)[0], dtype, "y")


def test_numpy_input(rng):
    layer = make_layer(CELL_BY_NAME["gru"], True)
    x = sequences(rng, layer)
    lengths = lengths_for(rng, 11, 7)
    y = fdask.predict(layer, x, lengths=lengths)
    assert isinstance(y, da.Array)
    assert_close(y.compute(scheduler="threads"), layer(x, lengths=lengths)[0], "float64", "y")


@pytest.mark.parametrize("batch_first", [False, True])
def test_time_and_feature_chunks_are_merged(batch_first, rng):
    layer = make_layer(CELL_BY_NAME["lstm_proj"], batch_first)
    x = sequences(rng, layer)
    batch = (3, 5, 3)
    time = (2, 3, 2)
    feat = (1, 3)
    chunks = (batch, time, feat) if batch_first else (time, batch, feat)
    xd = da.from_array(x, chunks=chunks)
    lengths = lengths_for(rng, 11, 7)
    y = fdask.predict(layer, xd, lengths=da.from_array(lengths, chunks=(6, 5)))
    assert y.chunks[0 if batch_first else 1] == batch
    assert y.chunks[1 if batch_first else 0] == (7,)
    assert_close(y.compute(scheduler="threads"), layer(x, lengths=lengths)[0], "float64", "y")


def test_a_unidirectional_float32_layer_on_the_default_scheduler(rng):
    layer = fastrnn.GRU(4, 5, dtype="float32", seed=3)
    x = rng.standard_normal((6, 9, 4)).astype(np.float32)
    y = fdask.predict(layer, da.from_array(x, chunks=(6, 4, 4)))
    assert y.shape == (6, 9, 5) and y.dtype == np.float32
    assert_close(y.compute(), layer(x)[0], "float32", "y")


def test_bad_arguments(rng):
    layer = make_layer(CELL_BY_NAME["gru"], False)
    x = da.from_array(sequences(rng, layer), chunks=(7, 4, 4))
    with pytest.raises(ValueError):
        fdask.predict(layer, x[0])                              # 2-D
    with pytest.raises(ValueError):
        fdask.predict(layer, x, lengths=np.full(10, 7))         # wrong batch size
    with pytest.raises(ValueError):
        fdask.predict(layer, x, lengths=np.full((11, 1), 7))



@pytest.mark.parametrize("kw", [dict(lengths=np.zeros(11, np.int64)),
                                dict(lengths=np.full(11, 8)),
                                dict(lengths=np.full(11, 7.0)),
                                dict(threads_per_task=0)],
                         ids=["zero-length", "too-long", "float-lengths", "zero-threads"])
def test_bad_values_raise_value_error(kw, rng):
    # Raised by predict or, at the latest, when the graph is computed.
    layer = make_layer(CELL_BY_NAME["gru"], False)
    x = da.from_array(sequences(rng, layer), chunks=(7, 4, 4))
    with pytest.raises(ValueError):
        fdask.predict(layer, x, **kw).compute(scheduler="threads")

class _RecordingGRU(fastrnn.GRU):
    """Records fastrnn's thread count seen inside each call (threaded scheduler only)."""

    def __call__(self, x, hx=None, lengths=None):
        self.seen.append((threading.get_ident(), fastrnn.get_num_threads()))
        return super().__call__(x, hx, lengths)


@needs_openmp
@pytest.mark.parametrize("threads_per_task", [None, 1, 3])
def test_tasks_run_with_threads_per_task(threads_per_task, rng, default_threads):
    fastrnn.set_num_threads(2)
    layer = _RecordingGRU(4, 6, seed=4)
    layer.seen = []
    x = rng.standard_normal((5, 12, 4))
    kw = {} if threads_per_task is None else dict(threads_per_task=threads_per_task)
    y = fdask.predict(layer, da.from_array(x, chunks=(5, 3, 4)), **kw)
    result = y.compute(scheduler="threads")
    expected = 1 if threads_per_task is None else threads_per_task
    assert len(layer.seen) == 4
    assert {n for _, n in layer.seen} == {expected}
    assert fastrnn.get_num_threads() == 2                  # the caller is not affected
    layer.seen = []
    assert_close(result, layer(x)[0], layer.dtype, "y")


# --------------------------------------------------------------- distributed

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _worker_facts():
    import os
    import fastrnn as worker_fastrnn
    return os.getpid(), worker_fastrnn.__file__


def test_predict_on_a_local_cluster(client, rng):
    import distributed
    import os
    facts = client.run(_worker_facts)
    assert len(facts) == 2
    pids = {pid for pid, _ in facts.values()}
    assert os.getpid() not in pids and len(pids) == 2
    assert {f for _, f in facts.values()} == {fastrnn.__file__}

    for cell, batch_first in [(CELL_BY_NAME["lstm_proj"], True), (CELL_BY_NAME["gru"], False),
                              (CELL_BY_NAME["rnn_tanh"], False)]:
        layer = make_layer(cell, batch_first, seed=5)
        x = sequences(rng, layer, B=13)
        lengths = lengths_for(rng, 13, 7)
        xd = chunked(x, layer, (4, 4, 5))
        with distributed.get_task_stream(client) as ts:
            result = fdask.predict(layer, xd, lengths=da.from_array(lengths, chunks=5)) \
                .compute()                                  # the client's scheduler
        assert_close(result, layer(x, lengths=lengths)[0], "float64", f"y {layer!r}")
        workers = {task["worker"] for task in ts.data}
        assert workers and workers <= set(facts)            # ran on the worker processes


def test_predict_float32_on_a_local_cluster_without_lengths(client, rng):
    layer = fastrnn.LSTM(4, 8, num_layers=3, dtype="float32", seed=6)
    x = rng.standard_normal((6, 20, 4)).astype(np.float32)
    future = client.compute(fdask.predict(layer, da.from_array(x, chunks=(6, 7, 4))))
    result = future.result()
    assert result.dtype == np.float32
    assert_close(result, layer(x)[0], "float32", "y")


# ------------------------------------------------------------- without dask

def test_predict_without_dask_raises_a_clear_import_error(monkeypatch, rng):
    layer = fastrnn.GRU(3, 4, seed=0)
    x = rng.standard_normal((5, 2, 3))
    for name in [m for m in sys.modules if m == "dask" or m.startswith("dask.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install .*dask"):
        fdask.predict(layer, x)


def test_predict_without_dask_via_import_hook(monkeypatch, rng):
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "dask" or name.startswith("dask."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError) as info:
        fdask.predict(fastrnn.RNN(3, 4, seed=0), rng.standard_normal((5, 2, 3)))
    message = str(info.value)
    assert "dask" in message and "pip install" in message


def test_module_imports_without_dask():
    # A fresh interpreter in which dask cannot be imported at all.
    code = textwrap.dedent("""
        import sys
        sys.modules["dask"] = None
        import numpy as np
        import fastrnn, fastrnn.dask
        try:
            fastrnn.dask.predict(fastrnn.GRU(3, 4), np.zeros((2, 1, 3)))
        except ImportError as exc:
            print("IMPORT-ERROR:", exc)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR:" in out.stdout and "pip install" in out.stdout, out.stdout


# -------------------------------------------------------------- thread_limit

@needs_openmp
def test_thread_limit_applies_inside_the_block_only(default_threads):
    fastrnn.set_num_threads(2)
    assert fastrnn.get_num_threads() == 2
    with thread_limit(1):
        assert fastrnn.get_num_threads() == 1
        assert kernel_threads(64, 4, 1024, 1024) == 1
        with thread_limit(3):                          # nested: the inner one wins ...
            assert fastrnn.get_num_threads() == 3
        assert fastrnn.get_num_threads() == 1          # ... and is undone on exit
        fastrnn.set_num_threads(5)                     # the process-wide setting
        assert fastrnn.get_num_threads() == 1          # does not beat the local limit
    assert fastrnn.get_num_threads() == 5
    fastrnn.set_num_threads(2)
    with pytest.raises(RuntimeError):
        with thread_limit(1):
            raise RuntimeError("boom")
    assert fastrnn.get_num_threads() == 2              # restored after an exception


@needs_openmp
def test_thread_limit_affects_only_the_current_python_thread(default_threads):
    fastrnn.set_num_threads(2)
    inside = threading.Event()          # main holds its limit
    checked = threading.Event()         # the other thread holds its own limit
    release = threading.Event()         # main has looked: both may leave
    seen = {}

    def other():
        assert inside.wait(10)
        seen["other, while main is limited"] = fastrnn.get_num_threads()
        with thread_limit(4):
            seen["other, own limit"] = fastrnn.get_num_threads()
            checked.set()
            assert release.wait(10)
        seen["other, after"] = fastrnn.get_num_threads()

    t = threading.Thread(target=other)
    t.start()
    try:
        with thread_limit(1):
            inside.set()
            assert checked.wait(10)
            seen["main, while other is limited"] = fastrnn.get_num_threads()
            release.set()
            t.join(10)
    finally:
        inside.set()
        release.set()
    t.join(10)
    assert not t.is_alive()
    assert seen == {"other, while main is limited": 2, "other, own limit": 4,
                    "main, while other is limited": 1, "other, after": 2}
    assert fastrnn.get_num_threads() == 2


@needs_openmp
def test_thread_limit_in_a_new_thread_starts_from_the_global_setting(default_threads):
    fastrnn.set_num_threads(3)
    seen = []
    with thread_limit(1):
        t = threading.Thread(target=lambda: seen.append(fastrnn.get_num_threads()))
        t.start()
        t.join(10)
    assert seen == [3]


@pytest.mark.parametrize("n", [0, -1, 1.5, True, None, "2"])
def test_thread_limit_rejects_bad_counts(n):
    with pytest.raises(ValueError):
        with thread_limit(n):
            pass
