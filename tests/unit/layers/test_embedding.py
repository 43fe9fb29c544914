"""Embedding (layers/embedding.py): rows looked up, the gradient of a repeated id summed."""
import numpy as np

from glassformer.backend import to_numpy
from glassformer.layers import Embedding
from unit.layers.test_base import on


def test_embedding_looks_up_rows_and_sums_repeated_ids(xp, rng):
    emb = on(xp, Embedding(5, 3, rng))
    ids = xp.asarray([[2, 2, 0], [2, 4, 0]])
    out = to_numpy(emb.forward(ids))
    np.testing.assert_array_equal(out[0, 0], to_numpy(emb.W)[2])
    dout = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    assert emb.backward(xp.asarray(dout)) is None
    dW = to_numpy(emb.dW)
    np.testing.assert_allclose(dW[2], dout[0, 0] + dout[0, 1] + dout[1, 0])
    np.testing.assert_allclose(dW[0], dout[0, 2] + dout[1, 2])
    np.testing.assert_allclose(dW[4], dout[1, 1])
    assert not dW[[1, 3]].any()
