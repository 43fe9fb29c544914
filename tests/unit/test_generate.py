"""Generation (generate.py): KV-cache decoding equal to the full forward, greedy with and without the
cache, seeded sampling, <eos>, the sampling settings and the prompt rules."""
import numpy as np
import pytest

from glassformer.backend import to_numpy
from glassformer.errors import UserError
from glassformer.generate import eos_id, generate_text, generate_tokens
from glassformer.models import build_model, lm_config
from glassformer.tokenizers import CharTokenizer
from unit.models.test_builders import V, lm
from unit.train.test_trainer import small_model


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_cached_decoding_equals_the_full_forward(dtype, tol):
    model = small_model(13, 1, dtype=dtype).eval()
    ids = np.random.default_rng(0).integers(0, 13, (2, 12))
    full = to_numpy(model.forward(ids))                     # (B, T, V)
    caches = model.new_caches()
    steps = [model.forward(ids[:, :5], caches, 0)]          # a prompt, then one token at a time
    buffers = [c["k_buf"] for c in caches]
    steps += [model.forward(ids[:, t:t + 1], caches, t) for t in range(5, 12)]
    np.testing.assert_allclose(np.concatenate([to_numpy(s) for s in steps], axis=1), full,
                               rtol=tol, atol=tol)
    D = model.config.d_model // model.config.n_heads
    assert caches[0]["k_buf"].shape == (2, model.config.n_heads, model.config.max_len, D)
    assert all(c["k_buf"] is b for c, b in zip(caches, buffers))   # written in place, never grown
    assert caches[0]["k"].shape[2] == 12


def test_greedy_generation_is_the_same_with_and_without_the_cache():
    model = small_model(13, 2)
    prompt = [1, 2, 3]
    a = generate_tokens(model, prompt, 30, temperature=0)           # 33 tokens > max_len 16: window slides
    b = generate_tokens(model, prompt, 30, temperature=0, use_cache=False)
    assert a == b and len(a) == 30


def force_eos_model(tok):
    """An untied model whose final LayerNorm always outputs ones and whose head favours <eos>."""
    model = build_model(lm_config("tiny", tok.vocab_size, d_model=16, n_heads=2, n_layers=1,
                                  max_len=16, tie_weights=False), np.random.default_rng(0))
    model.ln_f.gamma[...] = 0
    model.ln_f.beta[...] = 1
    model.head.W[:, eos_id(tok)] = 10.0
    return model


def test_generation_stops_at_eos():
    tok = CharTokenizer.from_text("abc ", specials=["<|endoftext|>"])
    model = force_eos_model(tok)
    assert eos_id(tok) == 0
    assert generate_tokens(model, [1, 2], 8, temperature=0, eos_id=0) == [0]
    assert generate_tokens(model, [1, 2], 3, temperature=0) == [0, 0, 0]   # no eos_id: runs to the limit
    assert generate_text(model, tok, "ab", 8, temperature=0) == ""
    assert generate_text(model, tok, "", 8, temperature=0) == ""   # empty prompt starts from eos


def test_generate_text_needs_a_prompt_without_eos():
    tok = CharTokenizer.from_text("abc")
    model = small_model(tok.vocab_size)
    with pytest.raises(UserError, match="prompt is empty"):
        generate_text(model, tok, "")
    out = generate_text(model, tok, "ab", 5, temperature=1.0, seed=0)
    assert len(out) == 5 and set(out) <= set("abc")
    assert out == generate_text(model, tok, "ab", 5, temperature=1.0, seed=0)


# ---- generate_tokens on a small DecoderLM ----------------------------------------------------


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
