"""Dropout (layers/dropout.py): identity at eval, about p zeroed at train with the expectation kept, seeded."""
import numpy as np
import pytest

from glassformer.backend import to_numpy
from glassformer.layers import Dropout


def test_dropout_eval_is_identity(rng):
    drop = Dropout(0.5, rng).eval()
    x = rng.standard_normal((4, 5))
    assert drop.forward(x) is x
    assert drop.backward(x) is x


def test_dropout_train_zeroes_about_p_and_keeps_the_expectation(xp):
    p = 0.3
    drop = Dropout(p, np.random.default_rng(1))
    out = to_numpy(drop.forward(xp.ones((200, 500))))
    assert abs((out == 0).mean() - p) < 0.01
    np.testing.assert_allclose(out[out != 0], 1.0 / (1.0 - p), rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.02
    dx = to_numpy(drop.backward(xp.ones((200, 500))))
    np.testing.assert_array_equal(dx, out)                 # backward uses the same mask


def test_dropout_same_seed_same_mask():
    x = np.ones((10, 10))
    a = Dropout(0.5, np.random.default_rng(7)).forward(x)
    b = Dropout(0.5, np.random.default_rng(7)).forward(x)
    c = Dropout(0.5, np.random.default_rng(8)).forward(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_rejects_bad_p(rng):
    with pytest.raises(ValueError):
        Dropout(1.0, rng)
    with pytest.raises(ValueError):
        Dropout(-0.1, rng)


# ---- on NumPy: the draws of rng.random ------------------------------------------------------


def test_dropout_on_numpy_draws_exactly_rng_random():
    layer = Dropout(0.5, np.random.default_rng(3))
    x = np.ones((4, 6), np.float32)
    y = layer.forward(x)
    keep = np.random.default_rng(3).random((4, 6)) >= 0.5
    assert np.array_equal(y, keep * 2.0)
