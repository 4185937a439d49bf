"""Thread counts, the BLAS thread guard and show_config()."""

import contextlib
import os
import platform
import sys
import threading

import numpy as np
import scipy

from fastrnn import _threads

__all__ = ["set_num_threads", "get_num_threads", "show_config", "kernel_threads",
           "thread_limit"]

_requested_threads = None
_OPENMP = _threads.openmp_enabled()
_local = threading.local()       # per-Python-thread override, see thread_limit()


def set_num_threads(n):
    """Use ``n`` threads in fastrnn's kernels (``None`` restores the default)."""
    global _requested_threads
    if n is None:
        _requested_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads expects n >= 1, got {n}")
    _requested_threads = int(n)


def get_num_threads():
    """Threads fastrnn's kernels may use.

    The value given to set_num_threads, else OpenMP's own default: the cores this
    process may run on, or OMP_NUM_THREADS, or a threadpoolctl limit in force.
    1 in a build without OpenMP.
    """
    if not _OPENMP:
        return 1
    local = getattr(_local, "threads", None)
    if local is not None:
        return local
    if _requested_threads is not None:
        return _requested_threads
    return max(1, _threads.openmp_max_threads())


@contextlib.contextmanager
def thread_limit(n):
    """Within the block, fastrnn calls made from this Python thread use ``n`` threads
    (other Python threads are not affected, unlike set_num_threads)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"thread_limit expects an int >= 1, got {n!r}")
    saved = getattr(_local, "threads", None)
    _local.threads = int(n)
    try:
        yield
    finally:
        _local.threads = saved


# Per-step work (multiply-adds of the recurrent GEMM) below which one thread is
# faster than a team: a barrier costs ~1-2 us on this class of machine, which a
# step of fewer than ~16k MACs per thread cannot pay back.
MIN_MACS_PER_THREAD = 16384
# Hidden units per thread below which a thread's GEMM slice is too thin to pay.
MIN_UNITS_PER_THREAD = 16


def kernel_threads(batch, gates, hidden, inputs, budget=None):
    """Threads for one kernel call, from the workload size (see the constants);
    ``budget`` caps them (None: get_num_threads())."""
    n = get_num_threads() if budget is None else budget
    if n <= 1:
        return 1
    macs = batch * gates * hidden * (hidden + inputs)
    n = min(n, max(1, macs // MIN_MACS_PER_THREAD), max(1, hidden // MIN_UNITS_PER_THREAD))
    return int(max(1, n))


class _BlasGuard:
    """Holds SciPy's BLAS to one thread while fastrnn's own threads call it.

    Kernels parallelise with OpenMP and call BLAS from every thread; a BLAS that
    also spawned threads would oversubscribe the cores.  Nested calls (several
    Python threads at once) share one switch: the first sets 1, the last restores.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = []
        self._libs = None
        self._controls_cache = None
        self._context = None         # the one _SingleThreaded (it holds no state)

    def _blas_libs(self):
        if self._libs is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:           # pragma: no cover - a declared dependency
                self._libs = []
                return self._libs
            scipy_dir = os.path.dirname(os.path.dirname(scipy.__file__))
            libs = [lc for lc in ThreadpoolController().lib_controllers
                    if lc.user_api == "blas"]
            own = [lc for lc in libs if lc.filepath.startswith(scipy_dir) and
                   "scipy" in os.path.basename(os.path.dirname(lc.filepath))]
            self._libs = own or libs
        return self._libs

    @staticmethod
    def _controls(lc):
        """(get, set) of the library's thread count.  For OpenBLAS, its own C
        functions: threadpoolctl's controller only obeys the first Python thread
        that used it (others silently do nothing), while fastrnn is called from
        any thread; the direct calls are also ~10x cheaper, which counts on the
        small calls that take the guard."""
        lib = getattr(lc, "dynlib", None)
        if getattr(lc, "internal_api", None) == "openblas" and lib is not None:
            for prefix in ("scipy_", ""):
                for suffix in ("", "64_", "_64"):
                    setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                    getter = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                    if setter is not None and getter is not None:
                        return getter, setter
        return lc.get_num_threads, lc.set_num_threads

    def _all_controls(self):
        if self._controls_cache is None:
            self._controls_cache = [self._controls(lc) for lc in self._blas_libs()]
        return self._controls_cache

    def single_threaded(self):
        """A context in which the BLAS runs on one thread."""
        context = self._context
        if context is None:
            context = self._context = _SingleThreaded(self)
        return context

    # Entered on every kernel call: kept to the lock and the library calls.
    def _enter(self):
        controls = self._controls_cache or self._all_controls()
        self._lock.acquire()
        try:
            if self._depth == 0:
                saved = []
                for getter, setter in controls:
                    n = getter()
                    if n != 1:
                        setter(1)
                        saved.append((setter, n))
                self._saved = saved
            self._depth += 1
        finally:
            self._lock.release()

    def _exit(self):
        self._lock.acquire()
        try:
            self._depth -= 1
            if self._depth == 0:
                for setter, n in self._saved:
                    setter(n)
                self._saved = []
        finally:
            self._lock.release()

    def describe(self):
        return [f"{lc.internal_api} {lc.version} ({lc.threading_layer}, "
                f"{lc.num_threads} threads) {lc.filepath}" for lc in self._blas_libs()]


class _SingleThreaded:
    __slots__ = ("guard",)

    def __init__(self, guard):
        self.guard = guard

    def __enter__(self):
        self.guard._enter()

    def __exit__(self, *exc):
        self.guard._exit()


blas_guard = _BlasGuard()


def show_config(file=None):
    """Print the version, build flags, OpenMP, the BLAS in use and thread counts."""
    from fastrnn import __version__
    try:
        from fastrnn._build_info import BUILD_INFO
    except ImportError:                   # pragma: no cover - built without setup.py
        BUILD_INFO = {}
    out = file or sys.stdout
    lines = [
        f"fastrnn {__version__}",
        f"python {platform.python_version()} on {platform.machine()} ({platform.system()})",
        f"numpy {np.__version__}, scipy {scipy.__version__}",
        f"compiler: {BUILD_INFO.get('compiler', 'unknown')}",
        f"compile flags: {' '.join(BUILD_INFO.get('compile_args', []))}",
        f"link flags: {' '.join(BUILD_INFO.get('link_args', []))}",
        f"sanitizers: {BUILD_INFO.get('sanitize') or 'none'}",
        f"OpenMP: {'on' if _threads.openmp_enabled() else 'off (serial kernels)'}",
        f"threads: fastrnn {get_num_threads()}, OpenMP max "
        f"{_threads.openmp_max_threads()}, cores {os.cpu_count()}",
        "BLAS (scipy.linalg.cython_blas):",
    ]
    lines += ["  " + d for d in blas_guard.describe()] or ["  unknown"]
    print("\n".join(lines), file=out)
