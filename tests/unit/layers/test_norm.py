"""LayerNorm and RMSNorm (layers/norm.py): each row normalised (RMSNorm: to unit RMS, not centred), then
scaled by the gain (and LayerNorm shifted by beta)."""
import numpy as np

from glassformer.backend import to_numpy
from glassformer.layers import LayerNorm, RMSNorm
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


# ---- RMSNorm -----------------------------------------------------------------------------------


def test_rmsnorm_output_has_unit_rms(rng):
    x = 7.0 * rng.standard_normal((3, 5, 16)) + 2.0
    out = RMSNorm(16, dtype="float64").forward(x)
    np.testing.assert_allclose(np.sqrt((out ** 2).mean(axis=-1)), 1.0, atol=1e-6)
    assert not np.allclose(out.mean(axis=-1), 0.0)           # no centring, unlike LayerNorm


def test_rmsnorm_gain_scales_each_feature(rng):
    norm = RMSNorm(4, dtype="float64")
    norm.g[...] = [1.0, 2.0, 0.0, -1.0]
    x = rng.standard_normal((2, 4))
    plain = RMSNorm(4, dtype="float64").forward(x)
    np.testing.assert_allclose(norm.forward(x), plain * norm.g)
