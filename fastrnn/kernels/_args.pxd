# Helpers for the Python entry points of the kernel modules: buffers arrive as
# flattened C-contiguous memoryviews, where an empty one stands for NULL.
from cython cimport floating
cimport numpy as cnp
import numpy as np


cdef inline floating* ptr(floating[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const floating* cptr(const floating[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline int need(Py_ssize_t have, Py_ssize_t want, str what) except -1:
    """Buffers are sized by the layers; a mismatch here is a bug caught before C runs."""
    if have < want:
        raise ValueError(f"{what}: buffer of {have} elements, kernel needs {want}")
    return 0


cdef inline Py_ssize_t packed_rows(const Py_ssize_t[::1] batch_sizes, Py_ssize_t T,
                                   Py_ssize_t B) except -1:
    """Rows of the packed sequence, after checking batch_sizes (empty: all B rows)."""
    cdef Py_ssize_t t, n = 0, prev = B
    if batch_sizes.shape[0] == 0:
        return T * B
    if batch_sizes.shape[0] != T:
        raise ValueError(f"batch_sizes has {batch_sizes.shape[0]} entries, expected {T}")
    for t in range(T):
        if batch_sizes[t] < 0 or batch_sizes[t] > prev:
            raise ValueError("batch_sizes must be non-increasing and within [0, B]")
        prev = batch_sizes[t]
        n += prev
    return n


cdef inline const Py_ssize_t* sizes_ptr(const Py_ssize_t[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL
