"""Models: shapes, config validation, learning a trivial task, causality, tied weights, generation."""
import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.layers import Linear, Pooling, TiedLMHead
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import DecoderLM, EncoderClassifier, ModelConfig, build_model
from glassformer.optim.optimizers import Adam
from glassformer.generate import generate_tokens

V = 11


def config(**kw):
    base = dict(vocab_size=V, d_model=16, n_heads=2, n_layers=2, d_ff=32, max_len=12, n_classes=3)
    base.update(kw)
    return ModelConfig(**base)


def lm(rng, **kw):
    return DecoderLM(config(kind="decoder_lm", **kw), rng)


# ---- shapes and construction ----------------------------------------------------------------

def test_encoder_classifier_shape(rng):
    model = EncoderClassifier(config(), rng)
    assert model.forward(rng.integers(0, V, (4, 7))).shape == (4, 3)


def test_decoder_lm_shape(rng):
    model = lm(rng, tie_weights=False, norm_first=True)
    assert model.forward(rng.integers(0, V, (2, 5))).shape == (2, 5, V)


def test_build_model(rng):
    assert isinstance(build_model(config(), rng), EncoderClassifier)
    assert isinstance(build_model(config(kind="decoder_lm"), rng), DecoderLM)


def test_model_dtype_follows_the_config(rng):
    model = lm(rng, dtype="float64")
    assert all(p.dtype == np.float64 for p, _ in model.get_parameters())
    assert model.forward(np.array([[1, 2]])).dtype == np.float64


# ---- ModelConfig ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad,match", [
    (dict(d_model=10, n_heads=3), "divisible"),
    (dict(activation="tanh"), "activation"),
    (dict(kind="seq2seq"), "kind"),
    (dict(n_layers=0), "n_layers"),
    (dict(dropout=1.0), "dropout"),
    (dict(pooling="max"), "pooling"),
])
def test_config_validation_raises_user_error(bad, match):
    with pytest.raises(UserError, match=match):
        config(**bad)


def test_config_dict_round_trip_and_unknown_keys():
    c = config(kind="decoder_lm", activation="gelu")
    assert ModelConfig.from_dict(c.to_dict()) == c
    assert c.d_head == 8
    with pytest.raises(UserError, match="n_experts"):
        ModelConfig.from_dict({**c.to_dict(), "n_experts": 4})


# ---- learning -------------------------------------------------------------------------------

def test_encoder_learns_first_token_mod_3(rng):
    model = EncoderClassifier(config(n_layers=1, max_len=8), rng)
    ce, opt = CrossEntropyLoss(), Adam(model.get_parameters(), lr=3e-3)
    data = np.random.default_rng(1)
    for _ in range(150):
        ids = data.integers(0, V, (32, 6))
        opt.zero_grad()
        loss = ce.forward(model.forward(ids), ids[:, 0] % 3)
        model.backward(ce.backward())
        opt.step()
    ids = data.integers(0, V, (300, 6))                    # fresh sequences
    accuracy = (model.eval().forward(ids).argmax(axis=-1) == ids[:, 0] % 3).mean()
    assert accuracy > 0.9, f"accuracy {accuracy:.2f} after 150 steps (last loss {float(loss):.3f})"


# ---- DecoderLM ------------------------------------------------------------------------------

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


def test_greedy_generation_is_deterministic_and_cache_free_equal(rng):
    model = lm(rng, dtype="float64", max_len=8)
    prompt = [1, 2, 3]
    a = generate_tokens(model, prompt, 10, temperature=0)          # 13 tokens > max_len: the window slides
    b = generate_tokens(model, prompt, 10, temperature=0)
    c = generate_tokens(model, prompt, 10, temperature=0, use_cache=False)
    assert len(a) == 10 and all(0 <= t < V for t in a)
    assert a == b == c


def test_sampled_generation_is_reproducible(rng):
    model = lm(rng)
    a = generate_tokens(model, [4], 12, temperature=1.5, seed=3)
    b = generate_tokens(model, [4], 12, temperature=1.5, seed=3)
    others = [generate_tokens(model, [4], 12, temperature=1.5, seed=s) for s in range(4, 8)]
    assert a == b
    assert any(o != a for o in others)
    assert generate_tokens(model, [4], 6, top_k=1, seed=1) == generate_tokens(model, [4], 6, temperature=0)


def test_generation_restores_training_mode(rng):
    model = lm(rng, dropout=0.1)
    generate_tokens(model, [1], 2)
    assert model.training and model.drop.training


def test_eos_stops_generation(rng):
    model = lm(rng)
    greedy = generate_tokens(model, [1, 2], 5, temperature=0)
    eos = greedy[2]
    stopped = generate_tokens(model, [1, 2], 5, temperature=0, eos_id=eos)
    assert stopped == greedy[:greedy.index(eos) + 1]
    assert stopped[-1] == eos


@pytest.mark.parametrize("kw", [dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0),
                                dict(top_p=1.5)])
def test_bad_sampling_settings_raise(rng, kw):
    with pytest.raises(ValueError):
        generate_tokens(lm(rng), [1], 3, **kw)


def test_empty_prompt_raises(rng):
    with pytest.raises(ValueError, match="prompt"):
        generate_tokens(lm(rng), [], 3)


# ---- EncoderClassifier padding --------------------------------------------------------------

def test_mean_pooling_ignores_padded_tokens(rng):
    model = EncoderClassifier(config(pooling="mean", dtype="float64"), rng)
    ids = rng.integers(0, V, (2, 6))
    mask = np.array([[True] * 4 + [False] * 2, [True] * 6])
    out = model.forward(ids, mask).copy()
    ids2 = ids.copy()
    ids2[0, 4:] = (ids2[0, 4:] + 3) % V                    # change the padded tokens only
    np.testing.assert_allclose(model.forward(ids2, mask), out, rtol=1e-12, atol=1e-12)
    short = model.forward(ids[:1, :4])                     # the same sequence without padding
    np.testing.assert_allclose(short[0], out[0], rtol=1e-10, atol=1e-12)
    assert not np.allclose(model.forward(ids2)[0], model.forward(ids)[0])   # unmasked: it matters


@pytest.mark.parametrize("kw", [dict(activation="gelu", norm_first=True, positional="learned"),
                                dict(kind="decoder_lm"), dict(pooling="mean")])
def test_float32_stays_float32_through_forward_backward_and_adam(kw):
    # A NumPy float64 scalar (np.sqrt(D), np.pi) silently promotes float32 arrays to float64.
    cfg = ModelConfig(vocab_size=20, **kw)
    model = build_model(cfg, np.random.default_rng(0))
    ids = np.zeros((2, 6), dtype=np.int64)
    out = model.forward(ids)
    loss_fn = CrossEntropyLoss()
    loss_fn.forward(out, np.zeros(out.shape[:-1], dtype=np.int64))
    dlogits = loss_fn.backward()
    model.backward(dlogits)
    Adam(model.get_parameters()).step()
    assert out.dtype == np.float32 and dlogits.dtype == np.float32
    assert {str(a.dtype) for pg in model.get_parameters() for a in pg} == {"float32"}


def test_tied_head_follows_the_embedding_through_a_dtype_change(rng):
    """TiedLMHead reads the embedding's table when it runs, so astype/to (which rebuild it) keep the tie."""
    model = lm(rng).astype(np.float64)
    assert model.head.W.dtype == np.float64 and np.shares_memory(model.head.W, model.tok_emb.W)
    h = rng.standard_normal((2, 3, 16))
    np.testing.assert_allclose(model.logits(h), h @ model.tok_emb.W.T, rtol=1e-12)


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


# ---- GPT-2's scaled residual init (ModelConfig.scale_residual_init) --------------------------

def gpt2_like(scale, seed=0, **kw):
    cfg = dict(vocab_size=V, kind="decoder_lm", d_model=64, n_heads=4, n_layers=4, d_ff=256, max_len=12,
               norm_first=True, activation="gelu", positional="learned", init="normal", dtype="float64")
    cfg.update(kw)
    return DecoderLM(ModelConfig(scale_residual_init=scale, **cfg), np.random.default_rng(seed))


def test_scale_residual_init_draws_the_residual_projections_with_std_002_over_sqrt_2l():
    """GPT-2/nanoGPT: attn out and FFN out are N(0, 0.02 / sqrt(2 n_layers)); every other matrix N(0, 0.02)."""
    params = dict(gpt2_like(True).named_parameters())
    want = 0.02 / np.sqrt(2 * 4)
    residual = [n for n in params if n.endswith(("attn.proj.W", "ffn.fc2.W"))]
    assert len(residual) == 8
    for name in residual:                         # 4,096 or 16,384 draws: the sample std within 5%
        assert abs(params[name][0].std() / want - 1) < 0.05, (name, params[name][0].std())
    other = [n for n in params if n.endswith("fc1.W") or n.endswith("qkv.W")]
    for name in other:
        assert abs(params[name][0].std() / 0.02 - 1) < 0.05, (name, params[name][0].std())


def test_scale_residual_init_false_is_todays_model_and_true_only_rescales_it():
    """False (the default, and what an older checkpoint's config without the key gets) draws today's
    numbers; True draws the very same random numbers and multiplies the two projections by 1/sqrt(2L)."""
    old_dict = {k: v for k, v in gpt2_like(False).config.to_dict().items() if k != "scale_residual_init"}
    today = dict(DecoderLM(ModelConfig.from_dict(old_dict), np.random.default_rng(0)).named_parameters())
    plain, scaled = dict(gpt2_like(False).named_parameters()), dict(gpt2_like(True).named_parameters())
    assert ModelConfig.from_dict(old_dict).scale_residual_init is False
    for name, (p, _) in today.items():
        assert np.array_equal(plain[name][0], p), name
        factor = 8 ** -0.5 if name.endswith(("attn.proj.W", "ffn.fc2.W")) else 1.0
        assert np.array_equal(scaled[name][0], p * factor), name


def test_scale_residual_init_gradchecks_and_survives_a_checkpoint(tmp_path):
    from glassformer.checkpoint import load_checkpoint, save_checkpoint
    from glassformer.gradcheck import check_layer
    rng = np.random.default_rng(1)
    model = gpt2_like(True, d_model=8, n_heads=2, n_layers=2, d_ff=16)
    records = check_layer(model, model.forward, {"ids": rng.integers(0, V, (2, 5))}, rng)
    assert records and all(r["passed"] for r in records), [r for r in records if not r["passed"]]
    save_checkpoint(tmp_path / "m.npz", model)
    assert load_checkpoint(tmp_path / "m.npz").config.scale_residual_init is True


def test_scale_residual_init_needs_the_normal_init():
    with pytest.raises(UserError, match="init='normal'"):
        config(scale_residual_init=True)
    with pytest.raises(UserError, match="true or false"):
        config(init="normal", scale_residual_init="yes")
