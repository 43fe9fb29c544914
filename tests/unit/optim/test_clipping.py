"""Gradient clipping (optim/clipping.py): the global norm, exact in float64, float16 summed in float32,
float32 accurate at any length."""
import math

import numpy as np
import pytest

from glassformer.optim.clipping import clip_grad_norm, grad_norm, sum_squares


def test_clip_grad_norm(rng):
    g1, g2 = np.full((2, 2), 3.0), np.full(3, 4.0)         # norm sqrt(4*9 + 3*16) = sqrt(84)
    params = [(np.zeros((2, 2)), g1), (np.zeros(3), g2)]
    norm = clip_grad_norm(params, 1.0)
    assert float(norm) == pytest.approx(np.sqrt(84.0), rel=1e-6)
    new_norm = np.sqrt((g1 ** 2).sum() + (g2 ** 2).sum())
    assert new_norm == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g1 / g2[0], 0.75)           # direction kept
    before = [g1.copy(), g2.copy()]
    assert float(clip_grad_norm(params, 10.0)) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g1, before[0], rtol=1e-6)   # below the limit: unchanged
    np.testing.assert_allclose(g2, before[1], rtol=1e-6)


def test_grad_norm_of_float64_gradients_is_exact_to_float64(rng):
    """Summed in the gradients' own float64 (not float32, which is 3e-8 off), the norm agrees with an
    exactly rounded math.fsum of the squares, as torch.nn.utils.clip_grad_norm_ does for float64."""
    grads = [rng.standard_normal((37, 41)) * 10.0 ** rng.integers(-3, 3, (37, 41)),
             rng.standard_normal(1001), rng.standard_normal((3, 5, 7)) * 1e3]
    params = [(np.zeros_like(g), g) for g in grads]
    exact = math.sqrt(math.fsum(float(v) ** 2 for g in grads for v in g.ravel()))
    norm = grad_norm(params)
    assert norm.dtype == np.float64
    assert abs(float(norm) - exact) <= 1e-13 * exact
    total = clip_grad_norm(params, 0.5 * exact)
    assert abs(float(total) - exact) <= 1e-13 * exact
    after = math.sqrt(math.fsum(float(v) ** 2 for g in grads for v in g.ravel()))
    assert after == pytest.approx(0.5 * exact * exact / (exact + 1e-6), rel=1e-12)   # torch's eps


def test_sum_squares_sums_float16_in_float32_and_keeps_float32_and_float64():
    for dtype, want in [(np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64)]:
        g = np.full(3000, 1.5, dtype)                       # 6750: above float16's exact integers
        s = sum_squares(g)
        assert s.dtype == want and float(s) == 6750.0


@pytest.mark.parametrize("n", [1000, 1 << 16, 1 << 22])
def test_sum_squares_of_float32_is_accurate_at_any_length(rng, n):
    """Short gradients take the BLAS dot, long ones the pairwise sum: within 1e-6 of float64 either
    way (one running float32 dot over 4M numbers is off by about 8e-6, and fails this)."""
    g = rng.standard_normal(n).astype(np.float32) * 1e-3
    exact = float(np.dot(g.astype(np.float64), g.astype(np.float64)))
    s = sum_squares(g)
    assert s.dtype == np.float32 and abs(float(s) / exact - 1) < 1e-6
