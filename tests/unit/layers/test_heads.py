"""The heads (layers/heads.py): Pooling, first token or the mean over the unpadded ones, and its backward."""
import numpy as np
import pytest

from glassformer.layers import Pooling
from glassformer.models import EncoderClassifier
from unit.models.test_builders import config


@pytest.mark.parametrize("mode", ["first", "mean"])
def test_pooling_layer_and_its_exact_backward(rng, mode):
    pool = Pooling(mode)
    x = rng.standard_normal((2, 4, 3))
    mask = np.array([[True, True, False, False], [True] * 4])
    want = x[:, 0] if mode == "first" else np.stack([x[0, :2].mean(0), x[1].mean(0)])
    np.testing.assert_allclose(pool.forward(x, mask), want, rtol=1e-12)
    dout = rng.standard_normal((2, 3))
    dx = pool.backward(dout)
    if mode == "first":
        assert np.array_equal(dx[:, 0], dout) and not dx[:, 1:].any()
    else:                                                   # padded tokens get no gradient
        np.testing.assert_allclose(dx[0, :2], np.stack([dout[0] / 2] * 2), rtol=1e-12)
        assert not dx[0, 2:].any()
    with pytest.raises(ValueError, match="max"):
        Pooling("max")
    assert "pool" in EncoderClassifier(config(), rng).children()
