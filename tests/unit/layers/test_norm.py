"""LayerNorm (layers/norm.py): each row normalised, then scaled by gamma and shifted by beta."""
import numpy as np

from glassformer.backend import to_numpy
from glassformer.layers import LayerNorm
from unit.layers.test_base import on


def test_layernorm_normalises_each_row(xp, rng):
    x = xp.asarray(5.0 + 3.0 * rng.standard_normal((4, 6, 32)))
    out = to_numpy(on(xp, LayerNorm(32).astype(np.float64)).forward(x))
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(out.var(axis=-1), 1.0, rtol=1e-3)   # eps makes it just below 1


def test_layernorm_applies_gamma_and_beta(rng):
    ln = LayerNorm(4).astype(np.float64)
    x = rng.standard_normal((3, 4))
    base = ln.forward(x).copy()
    ln.gamma[...] = 2.0
    ln.beta[...] = [1.0, 0.0, -1.0, 0.5]
    np.testing.assert_allclose(ln.forward(x), 2 * base + ln.beta, rtol=1e-12)
