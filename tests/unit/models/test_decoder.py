"""DecoderLM (models/decoder.py): shapes, causality, the tied head."""
import numpy as np
import pytest

from glassformer.layers import Linear, TiedLMHead
from unit.models.test_builders import V, lm


def test_decoder_lm_shape(rng):
    model = lm(rng, tie_weights=False, norm_first=True)
    assert model.forward(rng.integers(0, V, (2, 5))).shape == (2, 5, V)


@pytest.mark.parametrize("kw", [dict(), dict(norm_first=True, positional="learned",
                                               tie_weights=False)], ids=["post-LN", "pre-LN"])
def test_decoder_is_causal(rng, kw):
    model = lm(rng, dtype="float64", **kw)
    ids = rng.integers(0, V, (2, 8))
    logits = model.forward(ids).copy()
    ids2 = ids.copy()
    ids2[:, 5:] = (ids2[:, 5:] + 1) % V                    # change tokens 5.. only
    logits2 = model.forward(ids2)
    np.testing.assert_allclose(logits2[:, :5], logits[:, :5], rtol=1e-12, atol=1e-12)
    assert not np.allclose(logits2[:, 5:], logits[:, 5:])


def test_tied_weights(rng):
    model = lm(rng)
    names = [n for n, _ in model.named_parameters()]
    assert isinstance(model.head, TiedLMHead) and model.head.own_parameters() == {}
    assert model.head.W.shape == (16, V) and np.shares_memory(model.head.W, model.tok_emb.W)
    assert names.count("tok_emb.W") == 1 and not any(n.startswith("head") for n in names)
    model.tok_emb.W[0] = 0.0                               # logits = h E^T: row 0 of E gives logit 0
    assert np.all(model.forward(np.array([[1, 2]]))[..., 0] == 0.0)
    untied = lm(rng, tie_weights=False)
    assert isinstance(untied.head, Linear) and "head.W" in [n for n, _ in untied.named_parameters()]
    assert untied.n_parameters() == model.n_parameters() + 16 * V


def test_tied_head_follows_the_embedding_through_a_dtype_change(rng):
    """TiedLMHead reads the embedding's table when it runs, so astype/to (which rebuild it) keep the tie."""
    model = lm(rng).astype(np.float64)
    assert model.head.W.dtype == np.float64 and np.shares_memory(model.head.W, model.tok_emb.W)
    h = rng.standard_normal((2, 3, 16))
    np.testing.assert_allclose(model.logits(h), h @ model.tok_emb.W.T, rtol=1e-12)
