"""The CPU overlay's BLAS reductions (kernels/cpu/reduce.py): row and column sums and dots as NumPy's."""
import numpy as np
import pytest


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 64), (4, 0), (0, 6)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blas_sums_equal_numpys(rng, shape, dtype):
    """row_sum / row_mean / column_sum / axis_sum (x @ ones) give NumPy's sums, shapes included."""
    from glassformer.kernels.cpu.reduce import axis_sum, column_sum, row_mean, row_sum
    x = rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    want = x.sum(axis=-1, keepdims=True)
    for got in (row_sum(x), axis_sum(x, -1), axis_sum(x, x.ndim - 1)):
        assert got.shape == want.shape and got.dtype == x.dtype
        np.testing.assert_allclose(got, want, **tol)
    if x.shape[-1]:
        np.testing.assert_allclose(row_mean(x), x.mean(axis=-1, keepdims=True), **tol)
    np.testing.assert_allclose(axis_sum(x, 0), x.sum(axis=0, keepdims=True), **tol)
    if x.ndim == 2:
        assert column_sum(x).shape == (x.shape[1],)
        np.testing.assert_allclose(column_sum(x), x.sum(axis=0), **tol)


def test_column_sum_adds_in_the_dtype_asked_for():
    """float16 rows summed in float32: 4096 ones give 4096, where a float16 sum would stall at 2048."""
    from glassformer.kernels.cpu.reduce import column_sum
    x = np.ones((4096, 2), np.float16)
    assert column_sum(x, np.float32).dtype == np.float32
    np.testing.assert_array_equal(column_sum(x, np.float32), [4096.0, 4096.0])


def test_the_vectors_of_ones_are_built_once_and_cannot_be_written():
    """reduce.ones caches NumPy's vectors (a hot path): the same read-only array for the same request."""
    from glassformer.kernels.cpu.reduce import ones
    v = ones(np, 5, "float32")
    assert v is ones(np, 5, np.float32) and v.dtype == np.float32 and v.tolist() == [1.0] * 5
    assert ones(np, 5, np.float64) is not v
    with pytest.raises(ValueError):
        v[0] = 2.0                                          # a caller's write would corrupt every sum


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 64), (4, 0), (0, 6)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_dots_equal_the_sum_of_the_product(rng, shape, dtype, monkeypatch):
    """row_dot / axis_dot give (a * b).sum(axis, keepdims=True), with vecdot and with einsum."""
    from glassformer.kernels.cpu import reduce
    a, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    want = (a * b).sum(axis=-1, keepdims=True)
    for got in (reduce.row_dot(a, b), reduce.axis_dot(a, b, -1)):
        assert got.shape == want.shape and got.dtype == a.dtype
        np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(reduce.axis_dot(a, b, 0), (a * b).sum(axis=0, keepdims=True), **tol)
    monkeypatch.delattr(np, "vecdot", raising=False)        # NumPy 1.x: the einsum route
    np.testing.assert_allclose(reduce.row_dot(a, b), want, **tol)
