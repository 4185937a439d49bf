"""The row-major BLAS layer against NumPy, including its matrix-vector shortcuts."""

import itertools

import numpy as np
import pytest

from fastrnn.kernels import blas as _blas


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m,n,k", [(1, 7, 5), (6, 1, 5), (1, 1, 4), (4, 6, 3), (5, 3, 1),
                                   (3, 4, 0), (1, 9, 0)])
def test_gemm_matches_numpy(dtype, trans_a, trans_b, m, n, k):
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    alpha, beta = 0.75, -0.5
    expected = alpha * (a.T if trans_a else a) @ (b.T if trans_b else b) + beta * c
    _blas.gemm_memview(trans_a, trans_b, dtype(alpha), a, b, dtype(beta), c)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


def test_gemm_beta_zero_ignores_nan_in_c():
    a = np.ones((1, 3))
    b = np.ones((3, 4))
    c = np.full((1, 4), np.nan)
    _blas.gemm_memview(False, False, 1.0, a, b, 0.0, c)
    np.testing.assert_array_equal(c, np.full((1, 4), 3.0))


def test_gemm_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        _blas.gemm_memview(False, False, 1.0, np.ones((2, 3)), np.ones((4, 5)), 0.0,
                           np.ones((2, 5)))
