"""Multi-head attention: causal and padding masks, the weights it exposes, fused QKV, the KV cache."""
import numpy as np
import pytest

from glassformer.layers.attention import MultiHeadAttention, attention_mask, merge_heads, split_heads
from glassformer.backend import to_numpy

C, H = 8, 2


def mha(xp, rng, **kw):
    """A float64 attention layer on xp's device."""
    return MultiHeadAttention(C, H, rng, **kw).astype(np.float64).to(xp.__name__)


def test_split_and_merge_heads_are_inverse(rng):
    x = rng.standard_normal((2, 5, C))
    heads = split_heads(x, H)
    assert heads.shape == (2, H, 5, C // H)
    np.testing.assert_array_equal(heads[:, 1], x[:, :, C // H:])    # head 1 = the second D columns
    np.testing.assert_array_equal(merge_heads(heads), x)


def test_causal_mask_blocks_the_future(xp, rng):
    layer = mha(xp, rng, causal=True)
    x = rng.standard_normal((2, 6, C))
    y = to_numpy(layer.forward(xp.asarray(x)))
    for t in range(5):
        x2 = x.copy()
        x2[:, t + 1:] = rng.standard_normal((2, 5 - t, C))         # change the future only
        y2 = to_numpy(layer.forward(xp.asarray(x2)))
        np.testing.assert_allclose(y2[:, :t + 1], y[:, :t + 1], rtol=1e-12, atol=1e-12)
        assert not np.allclose(y2[:, t + 1:], y[:, t + 1:])     # the future did change


def test_causal_weights_above_the_diagonal_are_zero(xp, rng):
    layer = mha(xp, rng, causal=True)
    layer.forward(xp.asarray(rng.standard_normal((2, 5, C))))
    att = to_numpy(layer.last_attention_weights)
    above = np.triu(np.ones((5, 5), bool), k=1)
    assert (att[..., above] == 0.0).all()
    assert (att[..., ~above] > 0.0).all()
    np.testing.assert_allclose(att[..., 0, 0], 1.0)            # the first token sees only itself


def test_padding_is_ignored(xp, rng):
    layer = mha(xp, rng)
    mask = np.array([[True, True, True, False, False], [True] * 5])
    x = rng.standard_normal((2, 5, C))
    y = to_numpy(layer.forward(xp.asarray(x), xp.asarray(mask)))
    att = to_numpy(layer.last_attention_weights)
    assert (att[0, :, :, 3:] == 0.0).all()                    # no weight on padded keys
    assert (att[1] > 0).all()
    x2 = x.copy()
    x2[0, 3:] = 100.0 * rng.standard_normal((2, C))            # change the padded content
    y2 = to_numpy(layer.forward(xp.asarray(x2), xp.asarray(mask)))
    np.testing.assert_allclose(y2[0, :3], y[0, :3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y2[1], y[1], rtol=1e-12, atol=1e-12)
    y3 = to_numpy(layer.forward(xp.asarray(x2)))              # without the mask it leaks
    assert not np.allclose(y3[0, :3], y[0, :3])


def test_padding_and_causal_combine(rng):
    allowed = attention_mask(np, 3, 3, True, np.array([[True, True, False]]))
    assert allowed.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(allowed[0, 0], [[1, 0, 0], [1, 1, 0], [1, 1, 0]])
    assert attention_mask(np, 3, 3, False) is None


def test_attention_weights_shape_and_rows(xp, rng):
    layer = mha(xp, rng)
    out = layer.forward(xp.asarray(rng.standard_normal((3, 4, C))))
    assert out.shape == (3, 4, C)
    att = to_numpy(layer.last_attention_weights)
    assert att.shape == (3, H, 4, 4)
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-12)
    assert (att >= 0).all()


def test_fused_and_separate_qkv_agree(rng):
    fused = MultiHeadAttention(C, H, rng, fused_qkv=True).astype(np.float64)
    sep = MultiHeadAttention(C, H, rng, fused_qkv=False).astype(np.float64)
    for i, proj in enumerate((sep.q_proj, sep.k_proj, sep.v_proj)):   # qkv columns: [q | k | v]
        proj.W[...] = fused.qkv.W[:, i * C:(i + 1) * C]
        proj.b[...] = rng.standard_normal(C)
        fused.qkv.b[i * C:(i + 1) * C] = proj.b
    sep.proj.W[...] = fused.proj.W
    sep.proj.b[...] = fused.proj.b
    x = rng.standard_normal((2, 5, C))
    mask = np.array([[True] * 4 + [False], [True] * 5])
    np.testing.assert_allclose(sep.forward(x, mask), fused.forward(x, mask), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal((2, 5, C))
    np.testing.assert_allclose(sep.backward(dout), fused.backward(dout), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sep.k_proj.dW, fused.qkv.dW[:, C:2 * C], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunks", [[1] * 6, [3, 1, 2]], ids=["one-by-one", "prompt-then-steps"])
def test_kv_cache_equals_the_full_forward(xp, rng, chunks):
    layer = mha(xp, rng, causal=True)
    x = xp.asarray(rng.standard_normal((2, 6, C)))
    full = to_numpy(layer.forward(x))
    cache, outs, t = {}, [], 0
    for n in chunks:
        outs.append(to_numpy(layer.forward(x[:, t:t + n], cache=cache)))
        t += n
    assert cache["k"].shape == (2, H, 6, C // H)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=1e-10, atol=1e-12)


def test_rejects_d_model_not_divisible_by_heads(rng):
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3, rng)
