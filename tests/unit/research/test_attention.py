"""Research attention (research/attention.py): RoPE, rotary and quadratic attention with their KV cache,
cross-attention, and the kernel attention's float64 gradient check."""
import numpy as np
import pytest

from glassformer.research import CrossAttention, QuadraticAttention, RotaryAttention, RotaryEmbedding
from unit.research.test_layers import _randomize


def test_rope_preserves_norms_and_inverts(rng):
    rope = RotaryEmbedding(8, 16)
    x = rng.standard_normal((2, 3, 5, 8))
    y = rope.rotate(x, offset=4)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1))
    np.testing.assert_allclose(rope.rotate(y, offset=4, inverse=True), x, atol=1e-12)
    assert not np.allclose(y[..., 1:, :], x[..., 1:, :])     # position 0 of offset 0 only is fixed


def test_rope_score_depends_on_relative_position_only(rng):
    rope = RotaryEmbedding(8, 32)
    q, k = rng.standard_normal((1, 1, 1, 8)), rng.standard_normal((1, 1, 1, 8))

    def score(m, n):                                        # (R_m q) . (R_n k)
        return float((rope.rotate(q, m) * rope.rotate(k, n)).sum())
    for m, n in [(0, 3), (5, 2), (7, 7)]:
        for shift in (1, 4, 20):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-12)
    assert score(0, 3) != pytest.approx(score(0, 5))


def test_rope_offset_matches_the_full_sequence(rng):
    rope = RotaryEmbedding(4, 10)
    x = rng.standard_normal((1, 2, 6, 4))
    np.testing.assert_allclose(rope.rotate(x[:, :, 2:], offset=2), rope.rotate(x)[:, :, 2:])
    with pytest.raises(ValueError, match="max_len"):
        rope.rotate(x, offset=5)
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(5, 10)


@pytest.mark.parametrize("cls", [RotaryAttention, QuadraticAttention])
def test_kv_cache_equals_full_forward(cls, rng):
    rope = {"rope": True} if cls is QuadraticAttention else {}     # RotaryAttention: always
    layer = _randomize(cls(8, 2, rng, causal=True, max_len=8, dtype="float64", **rope), rng)
    x = rng.standard_normal((2, 6, 8))
    full = layer.forward(x)
    cache = {}
    parts = [layer.forward(x[:, :3], cache=cache)]           # prompt, then one token at a time
    parts += [layer.forward(x[:, t:t + 1], cache=cache) for t in range(3, 6)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, atol=1e-12)
    assert cache["k"].shape == (2, 2, 6, 4)


def test_rotary_attention_scores_ignore_a_common_shift(rng):
    layer = _randomize(RotaryAttention(8, 2, rng, max_len=16, dtype="float64"), rng)
    x = rng.standard_normal((1, 4, 8))
    layer.forward(x)
    scores = layer.q @ layer.k.transpose(0, 1, 3, 2)          # tokens at positions 0..3
    k0 = layer.k.copy()
    empty = np.zeros((1, 2, 5, 4))
    layer.forward(x, cache={"k": empty, "v": empty})          # the same tokens at positions 5..8
    shifted = layer.q @ layer.k[:, :, 5:].transpose(0, 1, 3, 2)
    np.testing.assert_allclose(shifted, scores, atol=1e-12)
    assert not np.allclose(layer.k[:, :, 5:], k0)              # the keys themselves did move


def test_quadratic_attention_weights_and_causality(rng):
    layer = _randomize(QuadraticAttention(8, 2, rng, causal=True, dtype="float64"), rng)
    x = rng.standard_normal((2, 5, 8))
    out = layer.forward(x)
    att = layer.last_attention_weights                       # (B, H, T, T)
    expected = (layer.q @ layer.k.transpose(0, 1, 3, 2) / 4) ** 2
    mask = np.tril(np.ones((5, 5), bool))
    np.testing.assert_allclose(att, np.where(mask, expected, 0.0))
    assert att.min() >= 0 and not np.allclose(att.sum(-1), 1.0)   # no softmax normalisation
    x2 = x.copy()
    x2[:, 3:] += rng.standard_normal((2, 2, 8))               # change the future only
    np.testing.assert_allclose(layer.forward(x2)[:, :3], out[:, :3])


def test_cross_attention_ignores_padding(rng):
    layer = _randomize(CrossAttention(8, 2, rng, d_context=6, dtype="float64"), rng)
    x, ctx = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 5, 6))
    mask = np.array([[True, True, True, False, False], [True] * 5])
    out = layer.forward(x, ctx, mask)
    assert np.all(layer.last_attention_weights[0, :, :, 3:] == 0.0)
    ctx2 = ctx.copy()
    ctx2[0, 3:] = 100.0                                       # garbage in the padding
    np.testing.assert_allclose(layer.forward(x, ctx2, mask), out)
    dx, dctx = layer.backward(rng.standard_normal(out.shape))
    assert dx.shape == x.shape and dctx.shape == ctx.shape
    assert np.all(dctx[0, 3:] == 0.0) and np.any(dctx[1, 3:] != 0.0)
