"""The exported kernels: a downstream Cython module cimports and runs them, and the
C-level API (names and signatures in __pyx_capi__) does not change by accident."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastrnn
from fastrnn import kernels  # noqa: F401  (the package must import)
from fastrnn.kernels import blas, gru, lstm, rnn

SNAPSHOT = pathlib.Path(__file__).parent / "data" / "kernels_abi.json"
MODULES = {"blas": blas, "lstm": lstm, "gru": gru, "rnn": rnn}


def current_abi():
    """{module: {exported name: C signature}} read from the modules' __pyx_capi__."""
    return {name: {key: str(capsule).split('"')[1]
                   for key, capsule in sorted(mod.__pyx_capi__.items())}
            for name, mod in MODULES.items()}


def test_exported_kernels_match_the_snapshot():
    """A deliberate API change updates tests/data/kernels_abi.json, e.g. with
    ``python -c "import json, tests.test_cimport as t; print(json.dumps(t.current_abi(),
    indent=1))" > tests/data/kernels_abi.json`` (and says so in the changelog)."""
    assert current_abi() == json.loads(SNAPSHOT.read_text())


DOWNSTREAM_PYX = textwrap.dedent('''
    # cython: language_level=3, boundscheck=False, wraparound=False
    """A downstream package that runs fastrnn's LSTM kernel without the GIL."""
    import numpy as np
    from fastrnn.kernels.lstm cimport lstm_forward, lstm_workspace_size

    def lstm_sequence(float[:, ::1] x, float[:, ::1] w_ih, float[:, ::1] w_hh,
                      float[::1] b_ih, float[::1] b_hh, Py_ssize_t T, Py_ssize_t B,
                      int num_threads):
        cdef Py_ssize_t I = x.shape[1], H = w_hh.shape[1]
        y = np.zeros((T * B, H), np.float32)
        h_n = np.zeros((B, H), np.float32)
        c_n = np.zeros((B, H), np.float32)
        work = np.empty(lstm_workspace_size(T, B, H, H, False), np.float32)
        cdef float[:, ::1] y_v = y, h_v = h_n, c_v = c_n
        cdef float[::1] work_v = work
        with nogil:
            lstm_forward[float](T, B, I, H, H, NULL, False, &x[0, 0], &w_ih[0, 0],
                                &w_hh[0, 0], &b_ih[0], &b_hh[0], NULL, NULL, NULL,
                                &y_v[0, 0], H, &h_v[0, 0], &c_v[0, 0], NULL, NULL,
                                NULL, NULL, NULL, &work_v[0], num_threads)
        return y.reshape(T, B, H), h_n, c_n
''')

DOWNSTREAM_SETUP = textwrap.dedent('''
    import fastrnn, numpy
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    ext = Extension("downstream", ["downstream.pyx"],
                    include_dirs=[fastrnn.get_include(), numpy.get_include()])
    setup(name="downstream", ext_modules=cythonize(
        [ext], include_path=[fastrnn.get_include()], quiet=True))
''')


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    """Build the downstream extension in a temporary directory, as a user would."""
    tmp = tmp_path_factory.mktemp("downstream")
    (tmp / "downstream.pyx").write_text(DOWNSTREAM_PYX)
    (tmp / "setup.py").write_text(DOWNSTREAM_SETUP)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(fastrnn.get_include() + os.sep), *sys.path]))
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(tmp))
    try:
        import downstream as module
        yield module
    finally:
        sys.path.remove(str(tmp))
        sys.modules.pop("downstream", None)


@pytest.mark.parametrize("threads", [1, 2])
def test_downstream_module_runs_the_kernel(downstream, threads):
    rng = np.random.default_rng(0)
    T, B, I, H = 7, 3, 5, 16
    layer = fastrnn.LSTM(I, H, seed=1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    p = layer.params
    y, h_n, c_n = downstream.lstm_sequence(
        x.reshape(T * B, I), p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"],
        p["bias_hh_l0"], T, B, threads)
    y_ref, (h_ref, c_ref) = layer(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, h_ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_n, c_ref[0], rtol=1e-5, atol=1e-6)


def test_get_include_holds_the_declarations():
    root = pathlib.Path(fastrnn.get_include())
    for name in ("lstm.pxd", "gru.pxd", "rnn.pxd", "blas.pxd", "_cells.h", "_activations.h"):
        assert (root / "fastrnn" / "kernels" / name).is_file(), name
