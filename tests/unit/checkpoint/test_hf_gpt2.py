"""Hugging Face GPT-2 folders: read (every tensor by name, checked), written back bit-exact, and used by
the REPL, by --init-from and by python -m glassformer.export. The folders are made here, with HF's
tensor names and config keys, and a GPT-2 forward written out in NumPy checks what we compute."""
import json
import mmap
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from glassformer.checkpoint import load_checkpoint, read_meta, save_checkpoint
from glassformer.checkpoint.hf_gpt2 import bpe_files, hf_names
from glassformer.checkpoint.safetensors import (SafeTensors, bf16_to_f32, f32_to_bf16, load_safetensors,
                                                save_safetensors)
from glassformer.errors import UserError
from glassformer.models import ModelConfig, build_model, lm_config
from glassformer.tokenizers import ByteLevelBPE, CharTokenizer
from glassformer.tokenizers.bpe import bytes_to_unicode
from datapaths import DATA

L, C, H, T = 2, 16, 2, 16
U = bytes_to_unicode()
MERGES = [(U[32], "t"), ("h", "e"), (U[32] + "t", "he"), (U[32], "c"), ("a", "t"), (U[32] + "c", "at")]
EOT, V = 262, 263                                           # 256 bytes + 6 merges, then <|endoftext|>
TEXT = " the cat sat on the mat. the cat ate." * 40


def gpt2_arrays(rng, tied=True, F=4 * C, V=V):
    """Random weights in HF's names and shapes (Conv1D: (in, out)); LayerNorm gains near 1."""
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(L):
        shapes.update({f"h.{i}.ln_1.weight": (C,), f"h.{i}.ln_1.bias": (C,),
                       f"h.{i}.attn.c_attn.weight": (C, 3 * C), f"h.{i}.attn.c_attn.bias": (3 * C,),
                       f"h.{i}.attn.c_proj.weight": (C, C), f"h.{i}.attn.c_proj.bias": (C,),
                       f"h.{i}.ln_2.weight": (C,), f"h.{i}.ln_2.bias": (C,),
                       f"h.{i}.mlp.c_fc.weight": (C, F), f"h.{i}.mlp.c_fc.bias": (F,),
                       f"h.{i}.mlp.c_proj.weight": (F, C), f"h.{i}.mlp.c_proj.bias": (C,)})
    if not tied:
        shapes["lm_head.weight"] = (V, C)
    return {k: (rng.normal(0, 0.3, s) + (k.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))))
            .astype(np.float32) for k, s in shapes.items()}


def write_tokenizer(folder, names=("vocab.json", "merges.txt")):
    """A GPT-2-style vocab.json + merges.txt of our own: the 256 bytes, 6 merges, <|endoftext|>."""
    vocab = {U[b]: b for b in range(256)}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = EOT
    (folder / names[0]).write_text(json.dumps(vocab), encoding="utf-8")
    (folder / names[1]).write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES),
                                   encoding="utf-8")


def write_folder(folder, arrays, prefix="transformer.", masks=False, dtype=None, tokenizer=True, **config):
    """An HF GPT-2 folder as transformers writes one (config keys, prefix), with our safetensors writer."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k if k == "lm_head.weight" else prefix + k: v for k, v in arrays.items()}
    if masks:                                               # the causal-mask buffers older files carry
        for i in range(L):
            tensors[f"{prefix}h.{i}.attn.bias"] = np.tril(np.ones((1, 1, T, T), np.float32))
            tensors[f"{prefix}h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    save_safetensors(folder / "model.safetensors", tensors, metadata={"format": "pt"}, dtype=dtype)
    hf = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": C, "n_head": H,
          "n_layer": L, "n_positions": T, "n_ctx": T, "vocab_size": vocab_rows(arrays),
          "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "n_inner": None,
          "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "scale_attn_weights": True,
          "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
          "tie_word_embeddings": "lm_head.weight" not in arrays, "bos_token_id": EOT, "eos_token_id": EOT,
          "summary_type": "cls_index", "use_cache": True, "transformers_version": "4.40.0"}
    hf.update(config)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in hf.items() if v != "drop"}))
    if tokenizer:
        write_tokenizer(folder)
    return folder


def vocab_rows(arrays):
    """The vocabulary size config.json states: wte's rows, or V when a fuzz case dropped or reshaped wte."""
    wte = arrays.get("wte.weight")
    return int(wte.shape[0]) if wte is not None and wte.ndim == 2 else V


def reference_logits(a, ids, eps=1e-5):
    """GPT-2's forward written out from the HF tensors in float64, independent of glassformer's layers."""
    a = {k: v.astype(np.float64) for k, v in a.items()}

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

    n = ids.shape[-1]
    x = a["wte.weight"][ids] + a["wpe.weight"][:n]          # (B, T, C)
    for i in range(L):
        p = {k[len(f"h.{i}."):]: v for k, v in a.items() if k.startswith(f"h.{i}.")}
        qkv = ln(x, p["ln_1.weight"], p["ln_1.bias"]) @ p["attn.c_attn.weight"] + p["attn.c_attn.bias"]
        q, k, v = (t.reshape(*t.shape[:2], H, C // H).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, -1))
        att = np.where(np.tril(np.ones((n, n), bool)), q @ k.transpose(0, 1, 3, 2) / np.sqrt(C // H), -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        y = ((att / att.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = x + y @ p["attn.c_proj.weight"] + p["attn.c_proj.bias"]
        h = gelu(ln(x, p["ln_2.weight"], p["ln_2.bias"]) @ p["mlp.c_fc.weight"] + p["mlp.c_fc.bias"])
        x = x + h @ p["mlp.c_proj.weight"] + p["mlp.c_proj.bias"]
    x = ln(x, a["ln_f.weight"], a["ln_f.bias"])
    return x @ a.get("lm_head.weight", a["wte.weight"]).T   # (B, T, V)


IDS = np.array([[5, 258, 261, 100, 7, 262, 33, 258], [1, 2, 3, 4, 5, 6, 7, 8]])


# ---- reading -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix,masks,tied", [("transformer.", False, True), ("", True, True),
                                               ("transformer.", True, False), ("", False, False)])
def test_a_gpt2_folder_loads_and_computes_gpt2_s_logits(tmp_path, rng, prefix, masks, tied):
    arrays = gpt2_arrays(rng, tied=tied)
    ckpt = load_checkpoint(write_folder(tmp_path / "gpt2", arrays, prefix=prefix, masks=masks))
    c = ckpt.config
    assert (c.kind, c.d_model, c.n_heads, c.n_layers, c.max_len, c.vocab_size, c.d_ff, c.tie_weights) == \
        ("decoder_lm", C, H, L, T, V, 4 * C, tied)
    assert c.norm_first and c.positional == "learned" and c.activation == "gelu" and c.dropout == 0.0
    assert ckpt.task["name"] == "lm" and ckpt.tokenizer["type"] == "bpe"
    logits = ckpt.model.eval().forward(IDS)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference_logits(arrays, IDS), atol=1e-4, rtol=1e-4)


def test_the_weights_are_views_of_the_mapped_file_and_training_never_writes_it(tmp_path, rng):
    folder = write_folder(tmp_path / "gpt2", gpt2_arrays(rng))
    before = (folder / "model.safetensors").read_bytes()
    model = load_checkpoint(folder).model
    for name, (p, g) in model.named_parameters():            # no copy before first use
        root = p
        while isinstance(root, np.ndarray) and root.base is not None:
            root = root.base
        assert isinstance(getattr(root, "obj", root), mmap.mmap), name   # frombuffer: a memoryview
        assert p.flags.writeable and not np.shares_memory(p, g)
    model.tok_emb.W[...] = 0.0                                  # an update copies the page it touches
    model.blocks[0].ffn.fc1.W += 1.0
    assert (folder / "model.safetensors").read_bytes() == before


def test_decoding_copies_the_mapped_weights_into_memory_once_and_computes_the_same(tmp_path, rng):
    from glassformer.generate import generate_tokens
    from glassformer.layers.base import mapped
    folder = write_folder(tmp_path / "gpt2", gpt2_arrays(rng))
    model = load_checkpoint(folder).model
    logits = model.eval().forward(IDS)
    state = {name: p.copy() for name, p in model.state_dict().items()}
    assert all(mapped(p) for p, _ in model.get_parameters())
    greedy = generate_tokens(model, [1, 2, 3], 5, temperature=0)          # its first use: the copy
    assert not any(mapped(p) for p, _ in model.get_parameters())
    assert all(np.array_equal(p, state[name]) for name, p in model.state_dict().items())
    assert model.head.embedding is model.tok_emb                          # still tied
    before = model.tok_emb.W
    assert model.in_memory().tok_emb.W is before                          # once: nothing left to copy
    assert np.array_equal(model.forward(IDS), logits)
    assert generate_tokens(model, [1, 2, 3], 5, temperature=0) == greedy


def test_the_logits_equal_our_own_model_built_from_the_same_arrays(tmp_path, rng):
    arrays = gpt2_arrays(rng, tied=False)
    ckpt = load_checkpoint(write_folder(tmp_path / "gpt2", arrays))
    ours = build_model(ModelConfig(vocab_size=V, kind="decoder_lm", d_model=C, n_heads=H, n_layers=L,
                                   d_ff=4 * C, max_len=T, norm_first=True, activation="gelu",
                                   positional="learned", tie_weights=False), rng)
    state = {"tok_emb.W": arrays["wte.weight"], "pos.P": arrays["wpe.weight"],
             "ln_f.gamma": arrays["ln_f.weight"], "ln_f.beta": arrays["ln_f.bias"],
             "head.W": arrays["lm_head.weight"].T}
    for i in range(L):
        for hf, mine in [("ln_1", "ln1"), ("ln_2", "ln2")]:
            state[f"blocks.{i}.{mine}.gamma"] = arrays[f"h.{i}.{hf}.weight"]
            state[f"blocks.{i}.{mine}.beta"] = arrays[f"h.{i}.{hf}.bias"]
        for hf, mine in [("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.proj"),
                         ("mlp.c_fc", "ffn.fc1"), ("mlp.c_proj", "ffn.fc2")]:
            state[f"blocks.{i}.{mine}.W"] = arrays[f"h.{i}.{hf}.weight"]
            state[f"blocks.{i}.{mine}.b"] = arrays[f"h.{i}.{hf}.bias"]
    ours.load_state_dict(state)
    assert np.array_equal(ckpt.model.eval().forward(IDS), ours.eval().forward(IDS))


def test_f16_and_bf16_weights_load_as_their_float32_values(tmp_path, rng):
    arrays = gpt2_arrays(rng)
    half = load_checkpoint(write_folder(tmp_path / "f16", arrays, dtype="F16")).model.state_dict()
    bf = load_checkpoint(write_folder(tmp_path / "bf16", arrays, dtype="BF16")).model.state_dict()
    assert np.array_equal(half["blocks.1.attn.qkv.W"], arrays["h.1.attn.c_attn.weight"].astype(np.float16))
    assert np.array_equal(bf["blocks.1.attn.qkv.W"], bf16_to_f32(f32_to_bf16(arrays["h.1.attn.c_attn.weight"])))
    assert half["tok_emb.W"].dtype == bf["tok_emb.W"].dtype == np.float32


def test_layer_norm_epsilon_and_n_inner_are_read_and_written(tmp_path, rng):
    from glassformer.cli import export
    arrays = gpt2_arrays(rng, F=24)
    ckpt = load_checkpoint(write_folder(tmp_path / "gpt2", arrays, layer_norm_epsilon=0.05, n_inner=24))
    assert ckpt.config.norm_eps == 0.05 and ckpt.config.d_ff == 24
    np.testing.assert_allclose(ckpt.model.eval().forward(IDS), reference_logits(arrays, IDS, eps=0.05),
                               atol=1e-4, rtol=1e-4)
    assert export.main([str(tmp_path / "gpt2"), str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["layer_norm_epsilon"] == 0.05 and written["n_inner"] == 24
    assert load_checkpoint(tmp_path / "out").config == ckpt.config


def test_a_tied_file_may_keep_the_head_s_copy_but_it_must_equal_wte(tmp_path, rng):
    arrays = gpt2_arrays(rng)
    same = dict(arrays, **{"lm_head.weight": arrays["wte.weight"]})
    assert load_checkpoint(write_folder(tmp_path / "a", same, tie_word_embeddings=True)).config.tie_weights
    other = dict(arrays, **{"lm_head.weight": arrays["wte.weight"] + 1})
    with pytest.raises(UserError, match="lm_head.weight differs from wte"):
        load_checkpoint(write_folder(tmp_path / "b", other, tie_word_embeddings=True))


BAD_CONFIGS = [
    (dict(activation_function="relu"), "activation_function 'relu'"),
    (dict(activation_function="gelu"), "tanh form"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
    (dict(reorder_and_upcast_attn=True), "reorder_and_upcast_attn"),
    (dict(scale_attn_weights=False), "scale_attn_weights"),
    (dict(add_cross_attention=True), "add_cross_attention"),
    (dict(model_type="llama", architectures=["LlamaForCausalLM"]), "GPT-2 folders only"),
    (dict(n_layer=3), "missing \\['h.2"),
    (dict(n_layer=1), "unexpected \\['h.1"),
    (dict(vocab_size=300), "implies \\[300, 16\\]"),
    (dict(n_head=3), "not divisible"),
    (dict(n_head="drop"), "n_head = None"),
    (dict(n_layer=10 ** 12), "n_layer = 1,000,000,000,000 needs 12 tensors a layer"),   # hung listing names
    (dict(model_type="bert", architectures=7), "GPT-2 folders only"),   # found by fuzzing: a TypeError
    (dict(n_positions="drop", n_ctx=T), None),             # n_ctx alone is the context: loads
    (dict(layer_norm_epsilon="1e-5"), "layer_norm_epsilon"),
    (dict(tie_word_embeddings="yes"), "tie_word_embeddings"),
]


@pytest.mark.parametrize("overrides,message", BAD_CONFIGS)
def test_a_config_we_cannot_compute_is_refused_clearly(tmp_path, rng, overrides, message):
    folder = write_folder(tmp_path / "gpt2", gpt2_arrays(rng), **overrides)
    if message is None:
        assert load_checkpoint(folder).config.max_len == T
        return
    with pytest.raises(UserError, match=message) as e:
        load_checkpoint(folder)
    assert str(folder) in str(e.value)


def test_missing_extra_misshapen_or_bad_tensors_are_refused(tmp_path, rng):
    arrays = gpt2_arrays(rng)
    cases = [({k: v for k, v in arrays.items() if k != "h.1.ln_2.bias"}, {}, "missing \\['h.1.ln_2.bias"),
             (dict(arrays, **{"h.0.attn.c_attn.extra": np.ones(2, np.float32)}), {}, "unexpected"),
             (dict(arrays, **{"wpe.weight": np.ones((T, C + 1), np.float32)}), {}, "has shape"),
             (dict(arrays, **{"ln_f.bias": np.arange(C)}), {}, "is I64"),
             (dict(arrays, **{"ln_f.bias": np.full(C, np.nan, np.float32)}), {}, "NaN or inf"),
             (dict(arrays, **{"ln_f.bias": np.r_[np.inf, -np.inf, np.zeros(C - 2)].astype(np.float32)}),
              {}, "NaN or inf"),                            # their sum is NaN: refused all the same
             (dict(arrays, **{"ln_f.bias": np.full(C, 3e38, np.float32)}), {}, None),   # finite, though
             (dict(arrays, **{"lm_head.weight": arrays["wte.weight"]}), dict(tie_word_embeddings=False), None)]
    # (3e38 x C: their sum overflows to inf, so each number is checked, and each is finite: it loads)
    for k, (bad, config, message) in enumerate(cases):
        folder = write_folder(tmp_path / str(k), bad, **config)
        if message is None:
            load_checkpoint(folder)
            continue
        with pytest.raises(UserError, match=message):
            load_checkpoint(folder)
    both = write_folder(tmp_path / "both", arrays)          # the same tensor with and without the prefix
    tensors = load_safetensors(both / "model.safetensors")
    save_safetensors(both / "model.safetensors", dict(tensors, **{"wte.weight": arrays["wte.weight"]}))
    with pytest.raises(UserError, match="twice"):
        load_checkpoint(both)


def test_found_by_fuzzing_a_missing_size_deep_vocab_and_f64_overflow_are_one_clear_line(tmp_path, rng):
    """tests/robustness/test_fuzz_interop.py's finds: the folder named twice, RecursionError/ValueError, a RuntimeWarning."""
    folder = write_folder(tmp_path / "gpt2", gpt2_arrays(rng), n_layer="drop")
    with pytest.raises(UserError, match="n_layer = None") as e:
        load_checkpoint(folder)
    assert str(e.value).count(str(folder)) == 1, e.value
    for body in ("[" * 100_000, '{"a": ' + "1" * 5000 + "}"):
        folder = write_folder(tmp_path / "vocab", gpt2_arrays(rng))
        (folder / "vocab.json").write_text(body)
        with pytest.raises(UserError, match=r"vocab.json: not valid JSON \((nested too deeply|a number too long)"):
            load_checkpoint(folder)
    arrays = gpt2_arrays(rng)
    folder = write_folder(tmp_path / "f64", dict(arrays, **{"ln_f.bias": np.full(C, 1e300)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # the cast to float32 warned of overflow
        with pytest.raises(UserError, match="beyond float32's range"):
            load_checkpoint(folder)


def test_a_folder_without_safetensors_or_json_is_one_clear_error(tmp_path, rng):
    folder = write_folder(tmp_path / "pickle", gpt2_arrays(rng))
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="never a pickle"):
        load_checkpoint(folder)
    (folder / "config.json").write_text("{broken")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="not valid JSON"):
        load_checkpoint(folder)


# ---- the tokenizer --------------------------------------------------------------------------------

def test_the_folder_s_tokenizer_gives_its_ids_under_either_pair_of_names(tmp_path, rng):
    for names in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")]:
        folder = write_folder(tmp_path / names[0], gpt2_arrays(rng), tokenizer=False)
        write_tokenizer(folder, names)
        ckpt = load_checkpoint(folder)
        tok = ByteLevelBPE.from_dict(ckpt.tokenizer)
        assert tok.encode(" the cat") == [258, 261] and tok.encode("<|endoftext|>", "all") == [EOT]
        assert tok.specials == {"<|endoftext|>": EOT} and tok.decode([258, 261, 33]) == " the cat!"
    assert load_checkpoint(write_folder(tmp_path / "none", gpt2_arrays(rng), tokenizer=False)).tokenizer is None


GPT2_DIR = DATA / "gpt2-tokenizer"


def test_gpt2_s_own_tokenizer_reads_from_hf_names_and_is_written_back_unchanged(tmp_path):
    if not (GPT2_DIR / "encoder.json").exists():
        pytest.skip("GPT-2's encoder.json / vocab.bpe are not in shared/data")
    shutil.copy(GPT2_DIR / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(GPT2_DIR / "vocab.bpe", tmp_path / "merges.txt")
    tok = ByteLevelBPE.from_hf(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tok.vocab_size == 50257 and tok.specials == {"<|endoftext|>": 50256}
    assert tok.encode("Hello world") == [15496, 995]
    vocab, merges = bpe_files(tok)
    assert json.loads(vocab) == json.loads((GPT2_DIR / "encoder.json").read_text(encoding="utf-8"))
    theirs = (GPT2_DIR / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    assert merges.splitlines()[1:] == [line for line in theirs if line]


# ---- out and back ---------------------------------------------------------------------------------

def test_load_export_load_is_bit_exact(tmp_path, rng, capsys):
    from glassformer.cli import export
    for tied in (True, False):
        arrays = gpt2_arrays(rng, tied=tied)
        src = write_folder(tmp_path / f"src{tied}", arrays, prefix="", masks=True)
        out = tmp_path / f"out{tied}"
        assert export.main([str(src), str(out)]) == 0
        assert f"wrote {out}: config.json, model.safetensors, vocab.json, merges.txt" in capsys.readouterr().out
        written = load_safetensors(out / "model.safetensors")
        expect = {k if k == "lm_head.weight" else "transformer." + k for k in arrays}
        assert set(written) == expect and set(written) == {("" if k == "lm_head.weight" else "transformer.")
                                                           + k for k in hf_names(load_checkpoint(src).config)}
        for k, v in arrays.items():
            assert np.array_equal(written[k if k == "lm_head.weight" else "transformer." + k], v)
        a, b = load_checkpoint(src), load_checkpoint(out)
        assert a.config == b.config and a.tokenizer == b.tokenizer
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
        config = json.loads((out / "config.json").read_text())
        assert {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": C, "n_head": H,
                "n_layer": L, "n_positions": T, "n_ctx": T, "vocab_size": V, "layer_norm_epsilon": 1e-5,
                "activation_function": "gelu_new", "tie_word_embeddings": tied, "bos_token_id": EOT,
                "eos_token_id": EOT}.items() <= config.items()
        assert json.loads((out / "vocab.json").read_text()) == json.loads((src / "vocab.json").read_text())
        assert (out / "merges.txt").read_text() == (src / "merges.txt").read_text()


def test_export_of_our_char_lm_writes_our_tokenizer_beside_the_weights(tmp_path, rng, capsys):
    from glassformer.cli import export
    tok = CharTokenizer(sorted(set(TEXT)))
    model = build_model(lm_config("tiny", tok.vocab_size, n_layers=1, max_len=T, d_model=C, n_heads=H,
                                  tie_weights=False), rng)
    path = save_checkpoint(tmp_path / "char.npz", model, tokenizer=tok.to_dict(), task={"name": "lm"})
    assert export.main([str(path), str(tmp_path / "out"), "--dtype", "float16"]) == 0
    out = capsys.readouterr().out
    assert "tokenizer.glassformer.json" in out and "cannot be written as GPT-2's" in out
    assert not (tmp_path / "out" / "vocab.json").exists()
    assert SafeTensors(tmp_path / "out" / "model.safetensors").entries["lm_head.weight"].dtype == "F16"
    back = load_checkpoint(tmp_path / "out")
    assert back.tokenizer == tok.to_dict() and not back.config.tie_weights
    assert np.array_equal(back.model.state_dict()["head.W"], model.head.W.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("overrides,message", [
    (dict(kind="encoder_classifier"), "not a decoder LM"), (dict(norm_first=False), "norm_first=False"),
    (dict(positional="sinusoidal"), "positional='sinusoidal'"), (dict(activation="relu"), "activation='relu'")])
def test_export_refuses_what_gpt2_cannot_compute(tmp_path, rng, capsys, overrides, message):
    from glassformer.cli import export
    settings = dict(vocab_size=40, kind="decoder_lm", d_model=C, n_heads=H, n_layers=1, d_ff=32, max_len=T,
                    norm_first=True, activation="gelu", positional="learned")
    path = save_checkpoint(tmp_path / "m.npz", build_model(ModelConfig(**dict(settings, **overrides)), rng))
    assert export.main([str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0] and "cannot export" in err[0]
    assert not (tmp_path / "out").exists()
    assert export.main([str(tmp_path / "missing.npz"), str(tmp_path / "out")]) == 2


def test_export_never_writes_over_a_run_folder(tmp_path, rng, capsys):
    from glassformer.cli import export
    model = build_model(lm_config("tiny", 40, n_layers=1, max_len=T, d_model=C, n_heads=H), rng)
    run = tmp_path / "run"
    path = save_checkpoint(run / "best.npz", model, task={"name": "lm"})
    (run / "config.json").write_text('{"task": "lm"}')
    assert export.main([str(path), str(run)]) == 2
    assert "holds a glassformer run" in capsys.readouterr().err
    (run / "best.npz").rename(tmp_path / "best.npz")
    assert export.main([str(tmp_path / "best.npz"), str(run)]) == 2       # its config.json alone
    assert (run / "config.json").read_text() == '{"task": "lm"}' and not (run / "model.safetensors").exists()
    assert export.main([str(tmp_path / "best.npz"), str(tmp_path / "hf")]) == 0
    assert export.main([str(tmp_path / "hf"), str(tmp_path / "hf")]) == 0   # an HF folder onto itself
    assert load_checkpoint(tmp_path / "hf").config == model.config


# ---- the REPL and --init-from -----------------------------------------------------------------------

def test_the_repl_talks_to_a_gpt2_folder_greedy_with_the_kv_cache(tmp_path, rng, capsys):
    from glassformer.cli import repl
    arrays = gpt2_arrays(rng)
    folder = write_folder(tmp_path / "gpt2", arrays)
    argv = ["--checkpoint", str(folder), "--prompt", " the cat", "--max-new-tokens", "6", "--temperature", "0"]
    assert repl.main(argv + ["--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["prompt_ids"] == [258, 261] and record["settings"]["temperature"] == 0
    ids, expect = [258, 261], []                            # greedy by the reference forward, no cache
    for _ in range(6):
        nxt = int(reference_logits(arrays, np.array([ids + expect]))[0, -1].argmax())
        if nxt == EOT:
            break
        expect.append(nxt)
    assert record["new_ids"][:len(expect)] == expect
    tok = ByteLevelBPE.from_dict(load_checkpoint(folder).tokenizer)
    assert record["text"] == tok.decode([i for i in record["new_ids"] if i != EOT])
    assert repl.main(argv) == 0
    assert capsys.readouterr().out.startswith(" the cat" + record["text"])


def test_init_from_a_gpt2_folder_fine_tunes_it_into_our_checkpoint(tmp_path, rng, capsys, monkeypatch):
    from glassformer.cli import train
    monkeypatch.chdir(tmp_path)                             # the token cache goes under ./.cache
    monkeypatch.setenv("COLUMNS", "400")                    # a wide terminal: the long path stays on one line
    arrays = gpt2_arrays(rng)
    folder = write_folder(tmp_path / "gpt2", arrays)
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    base = ["--task", "lm", "--data", str(tmp_path / "text.txt"), "--steps", "3", "--batch-size", "2",
            "--eval-interval", "3", "--eval-batches", "1", "--no-interactive"]
    assert train.main(base + ["--init-from", str(folder), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"initialised from {folder}" in out and "context 16" in out
    best = tmp_path / "run" / "best.npz"
    meta, archive = read_meta(best)                         # our own format, not the HF folder's
    archive.close()
    assert meta["format"] == "glassformer" and meta["task"]["settings"]["init_from"] == str(folder)
    source, tuned = load_checkpoint(folder), load_checkpoint(best)
    assert tuned.config == source.config and tuned.tokenizer == source.tokenizer
    a, b = source.model.state_dict(), tuned.model.state_dict()
    assert not np.array_equal(a["blocks.0.attn.qkv.W"], b["blocks.0.attn.qkv.W"])   # it trained
    assert np.abs(a["blocks.0.attn.qkv.W"] - b["blocks.0.attn.qkv.W"]).max() < 0.01  # from there
    assert train.main(base + ["--init-from", str(best), "--context", "8", "--dropout", "0.1",
                              "--out", str(tmp_path / "again")]) == 0            # ours too
    assert load_checkpoint(tmp_path / "again" / "best.npz").config.dropout == 0.1
    capsys.readouterr()
    for extra, message in [(["--preset", "small"], "drop --preset"), (["--tokenizer", "char"], "drop --tokenizer"),
                           (["--no-bias"], "drop --no-bias"),
                           (["--context", "17"], "longer than the 16 positions"),
                           ([], "no such checkpoint file")]:
        target = str(tmp_path / "missing.npz") if not extra else str(folder)
        assert train.main(base + ["--init-from", target, "--out", str(tmp_path / "x"), *extra]) == 2
        assert message in capsys.readouterr().err
    bare = write_folder(tmp_path / "bare", arrays, tokenizer=False)
    assert train.main(base + ["--init-from", str(bare), "--out", str(tmp_path / "x")]) == 2
    assert "holds no tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_bias_free_model_exports_as_gpt2_with_zero_biases_and_the_same_logits(tmp_path, rng, capsys):
    """nanoGPT's bias=False: GPT-2 has biases, so the export writes zeros; the loaded model agrees."""
    from glassformer.cli import export
    tok = CharTokenizer(sorted(set(TEXT)))
    model = build_model(lm_config("tiny", tok.vocab_size, n_layers=2, max_len=T, d_model=C, n_heads=H,
                                  bias=False), rng)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if n.endswith((".b", ".beta"))]          # no bias anywhere
    path = save_checkpoint(tmp_path / "nobias.npz", model, tokenizer=tok.to_dict(), task={"name": "lm"})
    assert load_checkpoint(path).model.config.bias is False             # the flag survives a checkpoint
    assert export.main([str(path), str(tmp_path / "out")]) == 0
    st = SafeTensors(tmp_path / "out" / "model.safetensors")
    assert "transformer.h.1.mlp.c_fc.bias" in st.entries and "transformer.ln_f.bias" in st.entries
    back = load_checkpoint(tmp_path / "out").model
    assert back.config.bias is True
    assert not np.any(back.state_dict()["blocks.1.ffn.fc1.b"]) and not np.any(back.state_dict()["ln_f.beta"])
    ids = rng.integers(0, tok.vocab_size, (2, T))
    np.testing.assert_allclose(back.forward(ids), model.forward(ids), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("how", ["drop", "scalar"])
def test_a_folder_without_a_usable_wte_is_written_and_refused_cleanly(tmp_path, rng, how):
    """The fixture copes with every case the fuzz test draws (it once raised KeyError itself)."""
    arrays = gpt2_arrays(rng)
    if how == "drop":
        del arrays["wte.weight"]
    else:
        arrays["wte.weight"] = np.ones((), np.float32)
    folder = write_folder(tmp_path / "gpt2", arrays, tokenizer=False)
    assert json.loads((folder / "config.json").read_text())["vocab_size"] == V
    with pytest.raises(UserError, match="wte"):
        load_checkpoint(folder)
