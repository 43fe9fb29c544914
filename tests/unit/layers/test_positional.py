"""Positions (layers/positional.py): the sinusoidal table, its encoding, learned positions."""
import numpy as np
import pytest

from glassformer.layers import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from glassformer.layers.positional import sinusoidal_table


def test_sinusoidal_table_values():
    table = sinusoidal_table(10, 6)
    np.testing.assert_array_equal(table[0], [0, 1, 0, 1, 0, 1])
    assert table[3, 0] == pytest.approx(np.sin(3.0))
    assert table[3, 1] == pytest.approx(np.cos(3.0))
    assert table[5, 2] == pytest.approx(np.sin(5 / 10000 ** (2 / 6)))
    assert table[5, 5] == pytest.approx(np.cos(5 / 10000 ** (4 / 6)))
    assert sinusoidal_table(4, 5).shape == (4, 5)          # odd d_model works


def test_sinusoidal_encoding_adds_the_table(rng):
    pe = SinusoidalPositionalEncoding(8, 4)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    out = pe.forward(x, start=2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out - x, np.broadcast_to(sinusoidal_table(8, 4)[2:5], x.shape),
                               rtol=1e-5, atol=1e-6)
    assert pe.backward(x) is x and pe.n_parameters() == 0
    with pytest.raises(ValueError, match="max_len"):
        pe.forward(x, start=6)


def test_learned_positional_embedding(rng):
    pos = LearnedPositionalEmbedding(8, 4, rng).astype(np.float64)
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(pos.forward(x, start=1), x + pos.P[1:4])
    dout = rng.standard_normal((2, 3, 4))
    pos.backward(dout)
    np.testing.assert_allclose(pos.dP[1:4], dout.sum(axis=0))
    assert not pos.dP[[0, 4, 5, 6, 7]].any()
    with pytest.raises(ValueError, match="max_len"):
        pos.forward(x, start=6)
