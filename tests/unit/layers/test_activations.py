"""Softmax, ReLU and GELU (layers/activations.py): known values, stability, GELU as GPT-2 writes it."""
import numpy as np
import pytest

from glassformer.backend import to_numpy
from glassformer.layers import GELU, ReLU, Softmax, softmax


def test_softmax_rows_sum_to_one(xp, rng):
    z = xp.asarray(rng.standard_normal((3, 4, 7)))
    p = to_numpy(softmax(z))
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    assert (p > 0).all()
    np.testing.assert_allclose(to_numpy(softmax(z, axis=0)).sum(axis=0), 1.0, rtol=1e-12)


def test_softmax_is_stable_for_huge_logits(xp):
    z = xp.asarray([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4]], dtype=xp.float32)
    p = to_numpy(Softmax().forward(z))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)


def test_softmax_matches_the_definition(rng):
    z = rng.standard_normal((2, 5))
    np.testing.assert_allclose(softmax(z), np.exp(z) / np.exp(z).sum(-1, keepdims=True), rtol=1e-12)


def test_relu_values(xp):
    x = xp.asarray([-2.0, -0.5, 0.0, 0.5, 3.0])
    layer = ReLU()
    np.testing.assert_array_equal(to_numpy(layer.forward(x)), [0, 0, 0, 0.5, 3.0])
    np.testing.assert_array_equal(to_numpy(layer.backward(xp.ones(5))), [0, 0, 0, 1, 1])


def test_gelu_values(xp):
    layer = GELU()
    out = to_numpy(layer.forward(xp.asarray([0.0, 10.0, -10.0, 1.0])))
    assert out[0] == 0.0
    assert out[1] == pytest.approx(10.0, abs=1e-9)         # GELU(large) = x
    assert out[2] == pytest.approx(0.0, abs=1e-9)          # GELU(very negative) = 0
    assert out[3] == pytest.approx(0.8411919906, abs=1e-6)  # tanh form at 1


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-15), (np.float32, 2e-7)])
def test_gelu_sigmoid_form_equals_the_tanh_formula(dtype, tol):
    """gelu_forward computes x sigmoid(2u); it must be GPT-2's 0.5 x (1 + tanh u), and t = tanh u."""
    x = np.concatenate([np.linspace(-60, 60, 2001), [-1e4, 1e4, 0.0]]).astype(dtype)
    layer = GELU()
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no warning, no NaN
        out = layer.forward(x)
    u = np.sqrt(2 / np.pi) * (x.astype(np.float64) + 0.044715 * x.astype(np.float64) ** 3)
    ref = 0.5 * x * (1 + np.tanh(u))
    assert out.dtype == dtype and np.all(np.isfinite(out))
    assert np.max(np.abs(out - ref) / (1 + np.abs(ref))) < tol
    assert np.max(np.abs(layer.t - np.tanh(u))) < 4 * tol
