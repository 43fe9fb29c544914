"""Language-model batches (data/corpus.py): random windows of the token stream, targets shifted by one."""
import numpy as np
import pytest

from glassformer.data import lm_batches
from glassformer.errors import UserError


def test_lm_batches_are_shifted_windows():
    tokens = np.arange(100, dtype=np.uint16)
    x, y = lm_batches(tokens, 5, 7)(np.random.default_rng(0))
    assert x.shape == y.shape == (5, 7)
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(UserError, match="shorter than context"):
        lm_batches(tokens[:5], 2, 7)
