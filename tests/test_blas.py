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


# The per-step product on packed weights (fastrnn/kernels/_packed_gemm.h): every
# tile shape (rows 1-8 x 1, 2 or 4 column groups), narrow last groups, a thread's share
# of the units (j0 > 0), several passes over A (large K), both weight layouts, the
# product accumulated, added to a bias row, or alone.
from hypothesis import given, settings, strategies as st  # noqa: E402


@st.composite
def packed_problems(draw):
    n_gates = draw(st.integers(1, 4))
    H = draw(st.integers(1, 45))
    group = _blas.packed_group()
    blocks = (H + group - 1) // group
    b0 = draw(st.integers(0, blocks))
    b1 = draw(st.integers(b0, blocks))
    return dict(M=draw(st.integers(0, 20)), K=draw(st.sampled_from([0, 1, 3, 8, 17, 64])),
                n_gates=n_gates, H=H, j0=min(group * b0, H), j1=min(group * b1, H),
                by_rows=draw(st.booleans()), accumulate=draw(st.booleans()),
                with_bias=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**31)))


def _check_packed(M, K, n_gates, H, j0, j1, by_rows, accumulate, dtype, seed,
                  with_bias=False):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)).astype(dtype)
    w = rng.standard_normal((n_gates * H, K) if by_rows else (K, n_gates * H)).astype(dtype)
    c = rng.standard_normal((M, n_gates * H)).astype(dtype)
    expected = c.copy()
    cols = [g * H + u for g in range(n_gates) for u in range(j0, j1)]
    product = (a.astype(np.float64) @ (w.T if by_rows else w).astype(np.float64))[:, cols]
    bias = rng.standard_normal(n_gates * H).astype(dtype) if with_bias else None
    expected[:, cols] = product + (c[:, cols] if accumulate else
                                   bias[cols] if with_bias else 0)
    _blas.packed_gemm_memview(a, w, by_rows, n_gates, H, j0, j1, c, accumulate, bias)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.abs(a).sum(axis=1, keepdims=True) * np.abs(w).max(initial=1.0) + 1
    np.testing.assert_array_less(np.abs(c - expected), np.broadcast_to(tol * scale, c.shape))


@settings(max_examples=300, deadline=None)
@given(packed_problems())
def test_packed_gemm_matches_numpy(problem):
    _check_packed(**problem)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 6])
def test_packed_gemm_of_few_rows_on_weights_from_l3(M):
    """2-5 rows on more packed weights than FASTRNN_STREAM_BYTES (2.5 MB; here 3.1 MB
    in AVX2's groups of 8, 6.2 MB in AVX-512's of 16) run on
    the tiles that prefetch (_packed_gemm.h), the last units of the four gates sharing
    groups that span gates; 1 and 6 rows on the others, as a check of the bar."""
    group = _blas.packed_group()
    H = group * 7 + group // 2
    for accumulate, with_bias in [(True, False), (False, True)]:
        _check_packed(M=M, K=3400, n_gates=4, H=H, j0=0, j1=H, by_rows=True,
                      accumulate=accumulate, dtype=np.float32, seed=M,
                      with_bias=with_bias)


@pytest.mark.parametrize("M", [9, 10, 11, 12, 13, 17, 19, 25, 27])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_gemm_tails_shared_out_on_weights_beyond_l1(M, dtype):
    """Packed weights over FASTRNN_TAIL_REREAD_BYTES (128 KB; here ~300-600 KB): a
    tail of 1-3 rows and the full tile above it run as two tiles of about equal rows
    (9 -> 5 + 4, 27 -> 8 + 8 + 6 + 5), on two groups or on four; the four gates' last
    units share groups that span gates."""
    group = _blas.packed_group()
    H = 2 * group + 5
    for accumulate, with_bias in [(True, False), (False, True), (False, False)]:
        _check_packed(M=M, K=600, n_gates=4, H=H, j0=0, j1=H, by_rows=True,
                      accumulate=accumulate, dtype=dtype, seed=M, with_bias=with_bias)
    _check_packed(M=M, K=600, n_gates=4, H=H, j0=group, j1=H, by_rows=False,
                  accumulate=True, dtype=dtype, seed=M + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("by_rows", [True, False])
def test_packed_gemm_several_passes_over_a(dtype, by_rows):
    # K = 1500 leaves room for only a few rows of A per pass over the weights.
    group = _blas.packed_group()
    for accumulate, with_bias in [(True, False), (False, True)]:
        _check_packed(M=70, K=1500, n_gates=2, H=group + 13, j0=group, j1=group + 13,
                      by_rows=by_rows, accumulate=accumulate, dtype=dtype, seed=3,
                      with_bias=with_bias)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("m,k,n", [(37, 53, 70), (5, 8, 16), (64, 31, 3)])
def test_packed_gemm_seconds_computes_the_product(m, k, n, threads):
    # The benchmark's ceiling times a real product: every thread's share of columns.
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    c = np.full((m, n), np.nan, np.float32)
    assert _blas.packed_gemm_seconds(a, w, c, threads, 2) > 0
    np.testing.assert_allclose(c, a.astype(np.float64) @ w, rtol=1e-5, atol=1e-5 * k)
    with pytest.raises(ValueError):
        _blas.packed_gemm_seconds(a, w.T.copy(), c, threads, 1)


def test_packed_gemm_rejects_bad_shapes():
    with pytest.raises(ValueError):
        _blas.packed_gemm_memview(np.ones((2, 3)), np.ones((8, 3)), True, 1, 8, 4, 8,
                                  np.ones((2, 8)), False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m,n,k", [(37, 5, 9), (6, 41, 7), (4, 4, 3), (3, 2, 5)])
@pytest.mark.parametrize("threads", [2, 3])
def test_gemm_split_over_threads_matches_numpy(dtype, trans_a, trans_b, m, n, k, threads):
    # Tall C splits by rows, wide C by columns; too small a C stays on one thread.
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = 0.5 * (a.T if trans_a else a) @ (b.T if trans_b else b) + 2.0 * c
    _blas.gemm_memview(trans_a, trans_b, 0.5, a, b, 2.0, c, threads)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


# fastrnn.Dense's products (fastrnn.kernels.dense): on the packed micro-kernel where it
# covers the case (AVX-512 builds), else on BLAS; the answers must not depend on which.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("m,n,k", [(37, 53, 70), (2048, 96, 128), (5, 3, 1), (1, 40, 17)])
def test_dense_product_matches_numpy(dtype, trans_a, trans_b, beta, threads, m, n, k):
    from fastrnn.kernels import dense
    rng = np.random.default_rng(m * 7 + n * 5 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b) + beta * c
    dense.product(trans_a, trans_b, 1.0, a, b, beta, c, threads)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.sqrt(k) + np.abs(beta * c)
    np.testing.assert_array_less(np.abs(c - expected), tol * scale)


def test_dense_product_covers_what_the_micro_kernel_can_do():
    from fastrnn.kernels import dense
    wide = _blas.packed_group() >= 16
    assert dense.covers(False, True, 1.0, 0.0) == wide
    assert dense.covers(False, False, 1.0, 1.0) == wide
    assert dense.covers(True, False, 1.0, 0.0) == wide
    assert not dense.covers(True, False, 1.0, 1.0)      # the weight gradients' tiles overwrite
    assert not dense.covers(True, True, 1.0, 0.0)
    assert not dense.covers(False, True, 2.0, 0.0)
    assert not dense.covers(False, True, 1.0, 0.5)
    with pytest.raises(ValueError):
        dense.product(False, False, 1.0, np.ones((2, 3)), np.ones((4, 5)), 0.0,
                      np.zeros((2, 5)))
