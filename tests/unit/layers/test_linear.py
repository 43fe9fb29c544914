"""Linear (layers/linear.py): x W + b, without a bias, and a bad init refused."""
import numpy as np
import pytest

from glassformer.layers import Linear


def test_linear_computes_x_w_plus_b(rng):
    layer = Linear(4, 3, rng)
    layer.b[...] = [1.0, 2.0, 3.0]
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(layer.forward(x), x @ layer.W + layer.b, rtol=1e-6)
    no_bias = Linear(4, 3, rng, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["W"]


def test_linear_rejects_unknown_init(rng):
    with pytest.raises(ValueError, match="init"):
        Linear(2, 2, rng, init="bogus")
