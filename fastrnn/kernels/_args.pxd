# Helpers for the Python entry points of the kernel modules.
#
# Buffers arrive as flattened C-contiguous ndarrays of the kernel's dtype, where an
# empty one stands for NULL.  They are read through the NumPy C API rather than typed
# memoryviews: acquiring a memoryview costs about 1,600 instructions, and an LSTM
# call takes 18 of them, which was most of a small call's time.  A module that
# cimports these calls cnp.import_array() once.
from cython cimport floating
from cpython.pyport cimport PY_SSIZE_T_MAX
cimport numpy as cnp


cdef inline int need(Py_ssize_t have, Py_ssize_t want, str what) except -1:
    """Buffers are sized by the layers; a mismatch here is a bug caught before C runs."""
    if have < want:
        raise ValueError(f"{what}: buffer of {have} elements, kernel needs {want}")
    return 0


cdef inline Py_ssize_t mul(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c=1) except -1:
    """a * b * c for a buffer size, refusing what would overflow (a wrapped product
    would pass the size checks and let the kernel run past the buffer)."""
    if a < 0 or b < 0 or c < 0:
        raise ValueError("a buffer size is negative")
    if b and a > PY_SSIZE_T_MAX // b:
        raise ValueError("a buffer size overflows")
    a *= b
    if c and a > PY_SSIZE_T_MAX // c:
        raise ValueError("a buffer size overflows")
    return a * c


cdef inline int check_dims(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                           Py_ssize_t P, Py_ssize_t col, Py_ssize_t ld) except -1:
    """Sizes the layers can pass: T, I, H, P >= 1, B >= 0, P <= H, and an output
    column range [col, col + P) within rows of ld >= col + P elements."""
    if T < 1 or I < 1 or H < 1 or P < 1 or B < 0 or P > H:
        raise ValueError(f"sizes T={T}, B={B}, I={I}, H={H}, P={P}: need T, I, H, P >= 1, "
                         f"B >= 0 and P <= H")
    if col < 0 or ld < P or col > ld - P:        # col + P itself could overflow
        raise ValueError(f"column {col} of rows of {ld} elements: a row of {P} does not fit")
    return 0


cdef inline bint is_double(object a) noexcept:
    """Whether ``a`` is a float64 array: the entry points' dtype dispatch (anything
    else goes the float32 way, whose checks name what is wrong)."""
    return cnp.PyArray_Check(a) and cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT64


cdef inline cnp.ndarray checked(object a, int typenum, bint writable, str what):
    if not cnp.PyArray_Check(a):
        raise TypeError(f"{what}: expected a NumPy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{what}: dtype {arr.dtype} where the kernel runs in "
                        f"{cnp.PyArray_DescrFromType(typenum)}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{what}: the kernel needs a C-contiguous buffer")
    if not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{what}: the kernel needs native byte order")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{what}: the kernel writes into a read-only buffer")
    return arr


cdef inline floating* ptr(object a, Py_ssize_t want, str what, floating* tag,
                         bint optional=False) except? NULL:
    """Data of the writable buffer ``a`` of ``tag``'s type, NULL when empty.  It holds
    at least ``want`` elements; an ``optional`` one may instead be empty (absent)."""
    cdef cnp.ndarray arr = checked(
        a, cnp.NPY_FLOAT32 if floating is float else cnp.NPY_FLOAT64, True, what)
    if not (optional and cnp.PyArray_SIZE(arr) == 0):
        need(cnp.PyArray_SIZE(arr), want, what)
    return <floating*>cnp.PyArray_DATA(arr) if cnp.PyArray_SIZE(arr) else NULL


cdef inline const floating* cptr(object a, Py_ssize_t want, str what, floating* tag,
                                 bint optional=False) except? NULL:
    """As ptr, for a buffer the kernel only reads."""
    cdef cnp.ndarray arr = checked(
        a, cnp.NPY_FLOAT32 if floating is float else cnp.NPY_FLOAT64, False, what)
    if not (optional and cnp.PyArray_SIZE(arr) == 0):
        need(cnp.PyArray_SIZE(arr), want, what)
    return <const floating*>cnp.PyArray_DATA(arr) if cnp.PyArray_SIZE(arr) else NULL


cdef inline Py_ssize_t size_of(object a) noexcept:
    """Elements of ``a``, an array already accepted by ptr or cptr."""
    return cnp.PyArray_SIZE(<cnp.ndarray>a)


cdef inline const Py_ssize_t* sizes_ptr(object batch_sizes) except? NULL:
    """Data of an intp array of batch sizes, NULL when empty (every row runs)."""
    cdef cnp.ndarray arr = checked(batch_sizes, cnp.NPY_INTP, False, "batch_sizes")
    return <const Py_ssize_t*>cnp.PyArray_DATA(arr) if cnp.PyArray_SIZE(arr) else NULL


cdef inline Py_ssize_t packed_rows(const Py_ssize_t* batch_sizes, object sizes_arr,
                                   Py_ssize_t T, Py_ssize_t B) except -1:
    """Rows of the packed sequence, after checking batch_sizes (NULL: all B rows).
    Every sequence starts at the first step (batch_sizes[0] == B), as the layers pack
    them: a row absent from it would never write its final state."""
    cdef Py_ssize_t t, n = 0, prev = B
    if batch_sizes == NULL:
        return mul(T, B)
    if size_of(sizes_arr) != T:
        raise ValueError(f"batch_sizes has {size_of(sizes_arr)} entries, expected {T}")
    if batch_sizes[0] != B:
        raise ValueError(f"batch_sizes[0] is {batch_sizes[0]}, expected B = {B}")
    for t in range(T):
        if batch_sizes[t] < 0 or batch_sizes[t] > prev:
            raise ValueError("batch_sizes must be non-increasing and within [0, B]")
        prev = batch_sizes[t]
        n += prev
    return n
