"""Building a model (models/builders.py): the family a config names, its dtype kept from forward to the
optimizer, and GPT-2's scaled residual init."""
import numpy as np
import pytest

from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import DecoderLM, EncoderClassifier, ModelConfig, build_model
from glassformer.optim.optimizers import Adam

V = 11


def config(**kw):
    base = dict(vocab_size=V, d_model=16, n_heads=2, n_layers=2, d_ff=32, max_len=12, n_classes=3)
    base.update(kw)
    return ModelConfig(**base)


def lm(rng, **kw):
    return DecoderLM(config(kind="decoder_lm", **kw), rng)


def test_build_model(rng):
    assert isinstance(build_model(config(), rng), EncoderClassifier)
    assert isinstance(build_model(config(kind="decoder_lm"), rng), DecoderLM)


def test_model_dtype_follows_the_config(rng):
    model = lm(rng, dtype="float64")
    assert all(p.dtype == np.float64 for p, _ in model.get_parameters())
    assert model.forward(np.array([[1, 2]])).dtype == np.float64


# ---- dtypes ---------------------------------------------------------------------------------


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


