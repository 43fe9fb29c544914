"""Research layers (research/layers.py): NoNorm, make_norm and the bilinear MLP. (Their backward passes, and
those of every research module: the gradcheck cases.)"""
import numpy as np
import pytest

from glassformer.research import Bilinear, NoNorm, make_norm


def _randomize(layer, rng, std=0.5):
    for _, (p, _) in layer.named_parameters():
        p[...] = rng.normal(0.0, std, p.shape)
    return layer


def test_nonorm_and_make_norm(rng):
    x = rng.standard_normal((2, 3))
    assert NoNorm().forward(x) is x and NoNorm().get_parameters() == []
    assert type(make_norm("rmsnorm", 3)).__name__ == "RMSNorm"
    assert type(make_norm("layernorm", 3)).__name__ == "LayerNorm"
    with pytest.raises(ValueError, match="unknown norm"):
        make_norm("batchnorm", 3)


def test_bilinear_is_a_product_of_two_projections(rng):
    layer = _randomize(Bilinear(4, 6, rng, bias=False, dtype="float64"), rng)
    x = rng.standard_normal((2, 3, 4))
    expected = ((x @ layer.w1.W) * (x @ layer.w2.W)) @ layer.w_out.W
    np.testing.assert_allclose(layer.forward(x), expected)
    np.testing.assert_allclose(layer.forward(2 * x), 4 * expected)   # degree 2, no nonlinearity
    assert not Bilinear(4, 6, rng).forward(x).any()                  # zero-initialised W_out
