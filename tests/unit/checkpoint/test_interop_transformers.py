"""Parity with Hugging Face transformers, both ways (skipped unless transformers and torch import):
their GPT2LMHeadModel's folder in our DecoderLM, and our exported folder in their GPT2LMHeadModel.

    pip install -e ".[interop]" && python -m pytest tests/unit/checkpoint/test_interop_transformers.py
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from glassformer.cli import export
from glassformer.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from glassformer.checkpoint.safetensors import f32_to_bf16  # noqa: E402
from glassformer.generate import generate_tokens  # noqa: E402
from glassformer.models import build_model, lm_config  # noqa: E402

V, T = 101, 32


def their_model(tied=True, **config):
    """A random GPT2LMHeadModel of a small GPT2Config, in eval mode."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=48, n_layer=3, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  tie_word_embeddings=tied, bos_token_id=V - 1, eos_token_id=V - 1, **config)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():                                   # biases and gains away from 0 and 1
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def their_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


IDS = np.random.default_rng(0).integers(0, V - 1, (2, 20))


@pytest.mark.parametrize("tied", [True, False])
def test_their_folder_in_our_model_gives_their_logits(tmp_path, tied):
    model = their_model(tied, layer_norm_epsilon=1e-4, n_inner=64)
    model.save_pretrained(tmp_path, safe_serialization=True)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.config.tie_weights == tied and ckpt.config.d_ff == 64 and ckpt.config.norm_eps == 1e-4
    ours = ckpt.model.eval().forward(IDS)
    np.testing.assert_allclose(ours, their_logits(model, IDS), atol=1e-4, rtol=1e-4)


def test_our_greedy_continuation_is_their_generate(tmp_path):
    model = their_model()
    model.save_pretrained(tmp_path, safe_serialization=True)
    ours = load_checkpoint(tmp_path).model.eval()
    prompt = [int(i) for i in IDS[0, :6]]
    with torch.no_grad():
        theirs = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20, min_new_tokens=20,
                                pad_token_id=V - 1)[0, len(prompt):].tolist()
    assert generate_tokens(ours, prompt, 20, temperature=0.0) == theirs            # the KV cache
    assert generate_tokens(ours, prompt, 20, temperature=0.0, use_cache=False) == theirs


@pytest.mark.parametrize("tied", [True, False])
def test_our_export_in_their_model_gives_our_logits(tmp_path, rng, tied):
    config = lm_config("tiny", V, d_model=48, n_heads=4, n_layers=2, max_len=T, tie_weights=tied, norm_eps=1e-6)
    model = build_model(config, rng)
    for _, (p, _) in model.named_parameters():               # not the init's zeros and ones
        p += rng.normal(0, 0.05, p.shape).astype(p.dtype)
    path = save_checkpoint(tmp_path / "ours.npz", model, task={"name": "lm"})
    assert export.main([str(path), str(tmp_path / "hf")]) == 0
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert theirs.config.layer_norm_epsilon == 1e-6 and theirs.config.tie_word_embeddings == tied
    np.testing.assert_allclose(their_logits(theirs, IDS), model.eval().forward(IDS), atol=1e-4, rtol=1e-4)


def test_our_bfloat16_rounding_is_torch_s(rng):
    x = np.concatenate([rng.standard_normal(10_000) * 10.0 ** rng.integers(-30, 30, 10_000),
                        [1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.4e38, -3.4e38, 0.0, -0.0]]).astype(np.float32)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(f32_to_bf16(x), theirs)


def test_our_exported_tokenizer_files_load_in_their_tokenizer(tmp_path, rng):
    from glassformer.tokenizers import ByteLevelBPE
    tok = ByteLevelBPE.train("the cat sat on the mat; the dog ate the cat's hat. " * 30, 300, progress=False)
    model = build_model(lm_config("tiny", tok.vocab_size, d_model=32, n_heads=2, n_layers=1, max_len=T), rng)
    path = save_checkpoint(tmp_path / "ours.npz", model, tokenizer=tok.to_dict(), task={"name": "lm"})
    assert export.main([str(path), str(tmp_path / "hf")]) == 0
    theirs = transformers.GPT2Tokenizer(str(tmp_path / "hf" / "vocab.json"), str(tmp_path / "hf" / "merges.txt"))
    for text in ["the cat sat", " dog's hat!  é ünïcode\n\nnew line", "<|endoftext|> after"]:
        assert theirs.encode(text) == tok.encode(text, "all")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == tok.specials["<|endoftext|>"]
