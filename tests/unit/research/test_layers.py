"""Research layers and models: RMSNorm, RoPE, quadratic and cross attention, bilinear MLP,
toy models, the encoder-decoder. (Their backward passes: the gradcheck cases.)"""
import numpy as np
import pytest

from glassformer import backend
from glassformer.errors import UserError
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.optim.optimizers import AdamW
from glassformer.research import Bilinear, CrossAttention, EncoderDecoder, EncoderDecoderConfig, MODEL_TYPES, NoNorm, QuadraticAttention, RotaryAttention, RotaryEmbedding, ToyConfig, build_toy_model, make_norm
from glassformer.layers import RMSNorm
from glassformer.gradcheck import CASES


def _randomize(layer, rng, std=0.5):
    for _, (p, _) in layer.named_parameters():
        p[...] = rng.normal(0.0, std, p.shape)
    return layer


# ---- norms and the bilinear MLP ----

def test_rmsnorm_output_has_unit_rms(rng):
    x = 7.0 * rng.standard_normal((3, 5, 16)) + 2.0
    out = RMSNorm(16, dtype="float64").forward(x)
    np.testing.assert_allclose(np.sqrt((out ** 2).mean(axis=-1)), 1.0, atol=1e-6)
    assert not np.allclose(out.mean(axis=-1), 0.0)           # no centring, unlike LayerNorm


def test_rmsnorm_gain_scales_each_feature(rng):
    norm = RMSNorm(4, dtype="float64")
    norm.g[...] = [1.0, 2.0, 0.0, -1.0]
    x = rng.standard_normal((2, 4))
    plain = RMSNorm(4, dtype="float64").forward(x)
    np.testing.assert_allclose(norm.forward(x), plain * norm.g)


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


# ---- RoPE ----

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


# ---- quadratic attention ----

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


# ---- cross-attention ----

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


# ---- toy models ----

@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_toy_model_types(model_type, rng):
    config = ToyConfig(vocab_size=11, d_model=16, n_heads=4, n_ctx=8, model_type=model_type)
    model = build_toy_model(config, rng)
    ids = rng.integers(0, 11, (2, 6))
    logits = model.forward(ids)
    assert logits.shape == (2, 6, 11) and logits.dtype == np.float32
    n_layers, has_mlp = MODEL_TYPES[model_type]
    assert len(model.blocks) == n_layers
    assert all((b.mlp is not None) == has_mlp for b in model.blocks)
    for att in model.attention_weights():
        assert att.shape == (2, 4, 6, 6)
        assert np.all(att[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0)
    for block in model.blocks:                                # zero-initialised output projections
        assert not block.attn.proj.W.any()
        if has_mlp:
            assert not block.mlp.fc2.W.any()
    assert abs(float(model.tok_emb.W.std()) - 0.02) < 0.005
    assert model.backward(np.ones_like(logits)) is None


def test_toy_variants_and_weight_names(rng):
    config = ToyConfig(vocab_size=9, d_model=8, n_heads=2, n_ctx=6, model_type="transformer_1L",
                       attention="quadratic", mlp="bilinear", norm="rmsnorm", positional="rope",
                       tie_weights=True)
    model = build_toy_model(config, rng)
    names = [n for n, _ in model.named_parameters()]
    assert "pos.P" not in names and not any(n.startswith("head") for n in names)
    assert {"blocks.0.mlp.w1.W", "blocks.0.mlp.w2.W", "blocks.0.mlp.w_out.W", "blocks.0.ln1.g",
            "ln_f.g", "blocks.0.attn.qkv.W", "blocks.0.attn.proj.W"} <= set(names)
    assert model.W_U.shape == (8, 9) and np.shares_memory(model.W_U, model.tok_emb.W)
    assert type(model.blocks[0].attn).__name__ == "QuadraticAttention"


def test_head_weights_reproduce_the_attention_scores(rng):
    config = ToyConfig(vocab_size=9, d_model=8, n_heads=2, n_ctx=6, norm="none", dtype="float64")
    model = _randomize(build_toy_model(config, rng), rng)
    ids = rng.integers(0, 9, (1, 5))
    model.forward(ids)
    attn = model.blocks[0].attn
    w = attn.head_weights()
    assert w["W_Q"].shape == (2, 8, 4) and w["W_O"].shape == (2, 4, 8)
    x = model.tok_emb.W[ids] + model.pos.P[:5]                # the residual stream into block 0
    b = attn.qkv.b
    q = x @ w["W_Q"] + b[:8].reshape(2, 1, 4)                 # (H, T, D) for batch row 0
    k = x @ w["W_K"] + b[8:16].reshape(2, 1, 4)
    np.testing.assert_allclose(q, attn.q[0])
    np.testing.assert_allclose(k, attn.k[0])
    y = attn.att[0] @ attn.v[0]                               # (H, T, D)
    merged = y.transpose(1, 0, 2).reshape(5, 8) @ attn.proj.W # (T, C): heads concatenated
    np.testing.assert_allclose(np.einsum("htd,hdc->tc", y, w["W_O"]), merged)  # sum over heads


def test_toy_model_kv_cache_equals_full_forward(rng):
    for positional in ("learned", "rope"):
        config = ToyConfig(vocab_size=9, d_model=8, n_heads=2, n_ctx=8, positional=positional,
                           model_type="transformer_2L", dtype="float64")
        model = _randomize(build_toy_model(config, rng), rng)
        ids = rng.integers(0, 9, (2, 7))
        full = model.forward(ids)
        caches = [{} for _ in model.blocks]
        steps = [model.forward(ids[:, :4], caches, 0)]
        steps += [model.forward(ids[:, t:t + 1], caches, t) for t in range(4, 7)]
        np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-10)


def test_toy_config_rejects_bad_values():
    with pytest.raises(UserError, match="model_type"):
        ToyConfig(vocab_size=5, model_type="transformer_3L")
    with pytest.raises(UserError, match="divisible"):
        ToyConfig(vocab_size=5, d_model=10, n_heads=4)
    with pytest.raises(UserError, match="norm"):
        ToyConfig(vocab_size=5, norm="batchnorm")
    with pytest.raises(UserError, match="even d_head"):
        ToyConfig(vocab_size=5, d_model=6, n_heads=2, positional="rope")


def test_toy_model_too_long_sequence_raises(rng):
    model = build_toy_model(ToyConfig(vocab_size=5, d_model=8, n_heads=2, n_ctx=4,
                                      positional="rope"), rng)
    with pytest.raises(ValueError, match="n_ctx"):
        model.forward(np.zeros((1, 5), dtype=int))


def test_toy_model_follows_the_backend(xp, rng):
    config = ToyConfig(vocab_size=9, d_model=8, n_heads=2, n_ctx=6, model_type="transformer_1L",
                       mlp="bilinear", positional="rope", norm="rmsnorm")
    ids = np.random.default_rng(1).integers(0, 9, (2, 5))
    ref = build_toy_model(config, np.random.default_rng(0)).forward(ids)
    backend.use("numpy" if xp is np else "cupy")
    model = build_toy_model(config, np.random.default_rng(0))
    out = model.forward(xp.asarray(ids))
    assert isinstance(out, xp.ndarray)
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=1e-4, atol=1e-6)
    model.backward(xp.ones_like(out))


def test_gradcheck_cases_registered():
    names = {n.split("[")[0] for n in CASES}
    assert {"RMSNorm", "RotaryEmbedding", "RotaryAttention", "QuadraticAttention", "Bilinear",
            "CrossAttention", "DecoderBlock", "ToyModel", "EncoderDecoder"} <= names
    toys = " ".join(n for n in CASES if n.startswith("ToyModel["))
    for word in list(MODEL_TYPES) + ["quadratic", "bilinear", "rmsnorm", "rope", "tied"]:
        assert word in toys


# ---- the encoder-decoder ----

PAD, BOS, EOS = 0, 1, 2


def _copy_batch(rng, B, L=4, n_symbols=6):
    src = rng.integers(3, 3 + n_symbols, (B, L))
    tgt_in = np.concatenate([np.full((B, 1), BOS), src], axis=1)    # teacher forcing
    tgt_out = np.concatenate([src, np.full((B, 1), EOS)], axis=1)
    return src, tgt_in, tgt_out


def test_encoder_decoder_learns_to_copy(rng):
    config = EncoderDecoderConfig(vocab_size=9, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                                  max_len=8, share_embeddings=True)
    model = EncoderDecoder(config, rng)
    opt = AdamW(model.get_parameters(), lr=3e-3, weight_decay=0.0)
    loss_fn = CrossEntropyLoss()
    for _ in range(150):
        src, tgt_in, tgt_out = _copy_batch(rng, 32)
        opt.zero_grad()
        loss = loss_fn.forward(model.forward(src, tgt_in), tgt_out)
        model.backward(loss_fn.backward())
        opt.step()
    assert float(loss) < 0.1
    src, _, _ = _copy_batch(rng, 64)
    out = model.greedy_decode(src, BOS, EOS, max_len=6)
    assert out.shape == (64, 5)                               # stopped after every row's EOS
    assert (out[:, :4] == src).all(axis=1).mean() >= 0.95
    assert (out[:, 4] == EOS).mean() >= 0.95


def test_encoder_decoder_source_padding_is_ignored(rng):
    config = EncoderDecoderConfig(vocab_size=9, d_model=8, n_heads=2, n_layers=2, d_ff=16,
                                  max_len=8, norm_first=True, dtype="float64")
    model = _randomize(EncoderDecoder(config, rng), rng)
    src = np.array([[3, 4, 5, PAD, PAD]])
    tgt = np.array([[BOS, 6, 7]])
    short = model.forward(src[:, :3], tgt)
    padded = model.forward(src, tgt, src_mask=src != PAD)
    np.testing.assert_allclose(padded, short, atol=1e-12)
    assert padded.shape == (1, 3, 9)


def test_greedy_decode_pads_finished_rows_with_eos(rng):
    config = EncoderDecoderConfig(vocab_size=5, d_model=8, n_heads=2, n_layers=1, d_ff=8,
                                  max_len=8)
    model = EncoderDecoder(config, rng)
    model.head.b[...] = -10.0
    model.head.b[EOS] = 10.0                                  # every row ends at once
    out = model.greedy_decode(np.array([[3, 4], [4, 3]]), BOS, EOS, max_len=5)
    assert out.tolist() == [[EOS], [EOS]]
    assert model.training                                     # mode restored
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(np.array([[3]]), BOS, EOS, max_len=8)


def test_encoder_decoder_config_validation():
    with pytest.raises(UserError, match="share_embeddings"):
        EncoderDecoderConfig(vocab_size=5, tgt_vocab_size=7, share_embeddings=True)
    with pytest.raises(UserError, match="positional"):
        EncoderDecoderConfig(vocab_size=5, positional="rope")
    config = EncoderDecoderConfig(vocab_size=5, tgt_vocab_size=7, n_layers=1, n_decoder_layers=3)
    model = EncoderDecoder(config, np.random.default_rng(0))
    assert len(model.encoder) == 1 and len(model.decoder) == 3
    assert model.forward(np.zeros((1, 4), int), np.zeros((1, 2), int)).shape == (1, 2, 7)


@pytest.mark.parametrize("name", ["KernelAttention[causal,no-rope]", "ToyBlock[transformer,rmsnorm,rope]"])
def test_kernel_attention_and_toy_block_pass_their_float64_gradient_checks(name):
    from glassformer.gradcheck import run_case
    records = run_case(name)
    assert records and all(r["passed"] for r in records), [r for r in records if not r["passed"]]
