"""Toy models (research/models.py): every type, variants and weight names, head weights, the KV cache,
bad configs, the backend, and their gradcheck cases."""
import numpy as np
import pytest

from glassformer import backend
from glassformer.errors import UserError
from glassformer.research import MODEL_TYPES, ToyConfig, build_toy_model
from glassformer.gradcheck import CASES
from unit.research.test_layers import _randomize


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


@pytest.mark.parametrize("name", ["KernelAttention[causal,no-rope]", "ToyBlock[transformer,rmsnorm,rope]"])
def test_kernel_attention_and_toy_block_pass_their_float64_gradient_checks(name):
    from glassformer.gradcheck import run_case
    records = run_case(name)
    assert records and all(r["passed"] for r in records), [r for r in records if not r["passed"]]
