"""The CPU overlay's GELU (kernels/cpu/activations.py): tiled, the numbers of one pass."""
import numpy as np
import pytest


@pytest.mark.parametrize("dtypes", [("float32", "float32"), ("float64", "float64"), ("float32", "float64")])
def test_gelu_in_tiles_gives_the_numbers_of_one_pass(rng, dtypes, monkeypatch):
    """The CPU overlay's gelu_forward/backward on tiles of 7 (shorter last tile, odd shape) equal the
    one-tile result bit for bit, and the tiled backward is the derivative (a product of x and dout in
    mixed dtypes)."""
    from glassformer.kernels.cpu import activations, tiling
    forward, backward = activations.gelu_forward_cpu, activations.gelu_backward_cpu
    x = (4 * rng.standard_normal((5, 3, 11))).astype(dtypes[0])
    dout = rng.standard_normal(x.shape).astype(dtypes[1])
    monkeypatch.setattr(tiling, "TILE", 10 ** 9)
    y1, c1 = forward(x)
    dx1 = backward(dout, c1)
    monkeypatch.setattr(tiling, "TILE", 7)
    y7, c7 = forward(x)
    dx7 = backward(dout, c7)
    assert y7.shape == x.shape and dx7.shape == x.shape and dx7.dtype == np.result_type(x, dout)
    np.testing.assert_array_equal(y7, y1)
    np.testing.assert_array_equal(c7[1], c1[1])
    np.testing.assert_array_equal(dx7, dx1)
    x64 = x.astype(np.float64)
    h = 1e-6
    numeric = (forward(x64 + h)[0] - forward(x64 - h)[0]) / (2 * h)
    np.testing.assert_allclose(dx7, dout * numeric, rtol=1e-4 if "float32" in dtypes else 1e-7, atol=1e-5)
