"""The compiled decoding step (kernels/cpu/decode.py): GPT-2-shaped steps against the reference, the
caches shared with it, greedy ids at GPT-2's vocabulary, NaN kept, and every step it does not cover
left to the reference. Skipped without numba (the `fast` extra)."""
import numpy as np
import pytest

from glassformer import backend
from glassformer.generate import generate_tokens
from glassformer.gradcheck import rel_error
from glassformer.kernels.cpu import compiled, decode
from glassformer.models import ModelConfig
from glassformer.models.decoder import DecoderLM

pytest.importorskip("numba", reason="the compiled overlay needs numba: pip install -e .[fast]")
from glassformer.kernels.cpu import jit  # noqa: E402  (numba's loops: only once numba is known here)
pytestmark = pytest.mark.usefixtures("compiled_on")
GPT2_SHAPED = dict(kind="decoder_lm", d_model=32, n_heads=4, n_layers=2, d_ff=128, max_len=40,
                   norm_first=True, activation="gelu", positional="learned")   # Xavier: sizeable activations


def gpt2_like(seed=0, vocab_size=97, **changes):
    """A small DecoderLM of GPT-2's shape (pre-LN, fused q k v, GELU, learned positions, tied head),
    its biases and LayerNorms' gains drawn too (they start at 0 and 1, which would hide them)."""
    config = ModelConfig(vocab_size=vocab_size, **{**GPT2_SHAPED, **changes})
    rng = np.random.default_rng(seed)
    model = DecoderLM(config, rng).eval()
    for name, p in model.state_dict().items():
        if p.ndim == 1:                                     # b, beta, gamma
            p[...] = rng.normal(1.0 if name.endswith("gamma") else 0.0, 0.3, p.shape)
    return model


def reference_step(model, ids, caches, start):
    return backend.reference("decode_step")(model, ids, caches, start)


def prompt_caches(model, prompt):
    """Caches holding `prompt` (B, T), filled by the reference as generation's first step fills them."""
    caches = model.new_caches()
    reference_step(model, prompt, caches, 0)
    return caches


@pytest.fixture
def threads():
    """backend.set_threads for the test, restored after."""
    saved = backend._threads
    yield backend.set_threads
    backend.set_threads(saved)


@pytest.mark.parametrize("shape", [(32, 4, 128), (30, 3, 70)], ids=["C32", "C30-odd-rows"])
def test_each_compiled_step_gives_the_reference_s_logits_and_keys(threads, shape, monkeypatch):
    """30 steps fed one token each; every third step of the compiled run goes through the reference,
    so the two also read each other's caches. C = 30 and d_ff = 70 leave rows after linear_row's
    groups of four."""
    threads(1)
    handed_back, plain = [], backend.reference
    monkeypatch.setattr(backend, "reference", lambda name: handed_back.append(name) or plain(name))
    C, H, d_ff = shape
    model, rng = gpt2_like(d_model=C, n_heads=H, d_ff=d_ff), np.random.default_rng(1)
    prompt = rng.integers(0, 97, (1, 5))
    mine, theirs = prompt_caches(model, prompt), prompt_caches(model, prompt)
    for step, token in enumerate(rng.integers(0, 97, 30)):
        ids, start = np.array([[token]]), 5 + step
        if step % 3 == 2:
            got = reference_step(model, ids, mine, start)
        else:
            handed_back.clear()
            got = decode.decode_step_compiled(model, ids, mine, start)
            assert handed_back == [], step                  # it ran compiled
        want = reference_step(model, ids, theirs, start)
        assert got.shape == want.shape == (1, 1, 97)
        assert rel_error(got, want) <= 1e-5, (step, rel_error(got, want))
    for a, b in zip(mine, theirs):
        assert a["k"].shape == b["k"].shape == (1, H, 35, C // H)
        assert rel_error(a["k"], b["k"]) <= 1e-5 and rel_error(a["v"], b["v"]) <= 1e-5


def test_greedy_ids_at_gpt2_s_vocabulary_match_the_reference_s(threads, monkeypatch):
    """generate_tokens with the compiled step and without: the same 24 ids from 50,257 logits a step."""
    threads(1)
    model = gpt2_like(vocab_size=50257, n_layers=3)
    blocks_run, block = [], jit.decode_block
    monkeypatch.setattr(jit, "decode_block", lambda *a: blocks_run.append(1) or block(*a))
    mine = generate_tokens(model, [5, 17, 300, 50256], 24, temperature=0)
    assert len(blocks_run) == 23 * 3                        # the prompt by the reference, then compiled
    compiled.set_enabled(False)
    assert generate_tokens(model, [5, 17, 300, 50256], 24, temperature=0) == mine


def test_a_nan_weight_gives_nan_logits_where_the_reference_s_are(threads):
    threads(1)
    model = gpt2_like()
    model.blocks[1].ffn.fc1.W[3, 5] = np.nan
    prompt = np.array([[1, 2, 3]])
    mine, theirs = prompt_caches(model, prompt), prompt_caches(model, prompt)
    got = decode.decode_step_compiled(model, np.array([[4]]), mine, 3)
    want = reference_step(model, np.array([[4]]), theirs, 3)
    assert np.isnan(want).any() and np.array_equal(np.isnan(got), np.isnan(want))


UNCOVERED = {
    "two threads": lambda: (gpt2_like(), [[4]], {"threads": 2}),
    "training mode": lambda: (gpt2_like().train(), [[4]], {}),
    "the loops off": lambda: (gpt2_like(), [[4]], {"loops": False}),
    "two tokens": lambda: (gpt2_like(), [[4, 5]], {}),
    "two sequences": lambda: (gpt2_like(), [[4], [6]], {}),
    "float64": lambda: (gpt2_like(dtype="float64"), [[4]], {}),
    "post-LN": lambda: (gpt2_like(norm_first=False), [[4]], {}),
    "ReLU": lambda: (gpt2_like(activation="relu"), [[4]], {}),
    "sinusoidal positions": lambda: (gpt2_like(positional="sinusoidal"), [[4]], {}),
    "an untied head": lambda: (gpt2_like(tie_weights=False), [[4]], {}),
    "no biases": lambda: (gpt2_like(bias=False), [[4]], {}),
    "separate q k v": lambda: (gpt2_like(fused_qkv=False), [[4]], {}),
}


@pytest.mark.parametrize("case", sorted(UNCOVERED))
def test_a_step_it_does_not_cover_runs_the_reference_bit_for_bit(case, threads):
    model, ids, setting = UNCOVERED[case]()
    threads(setting.get("threads", 1))
    compiled.set_enabled(setting.get("loops", True))
    ids = np.array(ids)
    prompt = np.tile(np.array([[1, 2, 3]]), (len(ids), 1))
    mine, theirs = prompt_caches(model, prompt), prompt_caches(model, prompt)
    assert decode.gpt2_step(model, ids, mine, 3) is None
    got = decode.decode_step_compiled(model, ids, mine, 3)
    assert np.array_equal(got, reference_step(model, ids, theirs, 3))
    assert all(np.array_equal(a["k"], b["k"]) for a, b in zip(mine, theirs))


def test_a_cache_the_reference_has_not_started_goes_to_the_reference():
    model = gpt2_like()
    assert decode.gpt2_step(model, np.array([[4]]), model.new_caches(), 0) is None
    assert decode.gpt2_step(model, np.array([[4]]), prompt_caches(model, np.array([[1, 2]])), 3) is None
