# cython: language_level=3
"""Build-time OpenMP facts, exposed to Python (as scikit-learn's _openmp_helpers)."""

from fastrnn.kernels.common cimport FASTRNN_OPENMP, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(FASTRNN_OPENMP)


def openmp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS and threadpoolctl's limits."""
    return omp_get_max_threads()
