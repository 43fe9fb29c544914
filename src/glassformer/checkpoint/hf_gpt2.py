"""Hugging Face GPT-2 folders in and out: config.json + model.safetensors (+ vocab.json, merges.txt).

GPT-2 is our DecoderLM with norm_first (pre-LN), learned positions, tanh GELU and biases. HF's Conv1D
stores its weight (in, out), as our Linear does, and c_attn's output is [q | k | v], heads contiguous
in each, as our fused qkv; only the untied lm_head (V, C) is the transpose of our head's W (C, V).
"""
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..files import write_text
from ..inputs import read_json
from ..models import DecoderLM, ModelConfig
from ..tokenizers import ByteLevelBPE, load_tokenizer
from ..tokenizers.bpe import bytes_to_unicode
from .archive import MAX_MODEL_BYTES
from .safetensors import SafeTensors, save_safetensors

CONFIG, WEIGHTS, OUR_TOKENIZER = "config.json", "model.safetensors", "tokenizer.glassformer.json"
TOKENIZER_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))   # HF's, OpenAI's
MAX_CONFIG_BYTES = 1 << 20
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")              # both 0.5 x (1 + tanh(...)): ours
# config keys that change the math, with the one value our DecoderLM computes
FIXED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
         "reorder_and_upcast_attn": False, "add_cross_attention": False}
MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")  # causal-mask buffers some files carry
PREFIX = "transformer."                                     # what GPT2LMHeadModel.save_pretrained writes
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
FINITE_TILE = 1 << 20                                 # numbers checked at a time
PER_LAYER = 12                                              # tensors of one block: 2 LayerNorms, 4 Conv1Ds


class Undrawn:
    """A stand-in Generator that draws float32 zeros: every weight is replaced by the file's at once,
    so the build skips drawing them (GPT-2 small: 124M normals) and, np.zeros being zeroed by the OS on
    first use, never touches their pages. Dropout is 0 here."""

    def normal(self, loc=0.0, scale=1.0, size=None):
        return np.zeros(size, np.float32)

    uniform = normal


def hf_error(folder, what):
    return UserError(f"{folder}: {what}")


def note_padding(where, n_tokens, rows):
    """One stderr line when the embedding has rows beyond the tokenizer (nanoGPT pads GPT-2's 50,257
    tokens to 50,304): generate.py never samples them; a larger tokenizer is refused by the caller."""
    if n_tokens < rows:
        print(f"note: {where}: its tokenizer has {n_tokens:,} tokens and its embedding {rows:,} rows; "
              f"generation never samples the {rows - n_tokens:,} ids beyond the tokenizer", file=sys.stderr)


def read_hf_config(folder):
    """config.json of a folder as a dict (bounded read); UserError when missing or not JSON."""
    d = read_json(Path(folder) / CONFIG, "config", max_bytes=MAX_CONFIG_BYTES)   # bounded; a FIFO refused
    if not isinstance(d, dict):
        raise hf_error(folder, f"{CONFIG} holds a JSON {type(d).__name__}, not an object")
    return d


def is_hf_folder(path):
    """True for a folder whose config.json names a Hugging Face model (model_type or architectures)."""
    path = Path(path)
    if not (path.is_dir() and os.path.lexists(path / CONFIG)):   # a FIFO config.json: read, refused
        return False
    try:
        d = read_hf_config(path)
    except UserError:
        return (path / WEIGHTS).exists()                    # then load_hf_gpt2 says what is wrong
    return "model_type" in d or "architectures" in d


def _whole(folder, d, key):
    """d[key], which must be a whole number >= 1 (missing: None, refused); UserError naming the key."""
    v = d.get(key)
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        raise hf_error(folder, f"{CONFIG}: {key} = {v!r} must be a whole number >= 1")
    return v


def config_from_hf(folder, d):
    """The ModelConfig of a GPT-2 config.json; anything our DecoderLM cannot compute is refused."""
    archs = d.get("architectures") or []
    if d.get("model_type", "gpt2") != "gpt2" and "GPT2LMHeadModel" not in (archs if isinstance(archs, list)
                                                                          else [archs]):   # 7: not iterable
        raise hf_error(folder, f"model_type {d.get('model_type')!r}: glassformer reads GPT-2 folders "
                       "only (model_type gpt2)")
    act = d.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise hf_error(folder, f"activation_function {act!r}: glassformer's GELU is the tanh form "
                       f"({' or '.join(TANH_GELUS)}); it cannot compute this model")
    for key, want in FIXED.items():
        if key in d and d[key] is not None and bool(d[key]) != want:
            raise hf_error(folder, f"{key} = {d[key]!r}: glassformer's DecoderLM computes only "
                           f"{key} = {str(want).lower()}, so this model cannot be loaded")
    C, H, V, L = (_whole(folder, d, key) for key in ("n_embd", "n_head", "vocab_size", "n_layer"))
    T = _whole(folder, d, "n_positions" if "n_positions" in d else "n_ctx")
    F = 4 * C if d.get("n_inner") is None else _whole(folder, d, "n_inner")   # before the try: one prefix
    eps = d.get("layer_norm_epsilon", 1e-5)
    tied = d.get("tie_word_embeddings", True)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        raise hf_error(folder, f"{CONFIG}: layer_norm_epsilon = {eps!r} must be a number in (0, 1)")
    if not isinstance(tied, bool):
        raise hf_error(folder, f"{CONFIG}: tie_word_embeddings = {tied!r} must be true or false")
    try:
        return ModelConfig(vocab_size=V, kind="decoder_lm", d_model=C, n_heads=H, n_layers=L, d_ff=F,
                           max_len=T, norm_first=True, activation="gelu", positional="learned",
                           fused_qkv=True, tie_weights=tied, init="normal", norm_eps=float(eps))
    except UserError as e:
        raise hf_error(folder, f"{CONFIG}: {e}") from None


def hf_names(config):
    """{HF tensor name (no prefix): (our parameter name, transposed?)} of a GPT-2 DecoderLM."""
    names = {"wte.weight": ("tok_emb.W", False), "wpe.weight": ("pos.P", False),
             "ln_f.weight": ("ln_f.gamma", False), "ln_f.bias": ("ln_f.beta", False)}
    parts = {"ln_1": "ln1", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "ln_2": "ln2",
             "mlp.c_fc": "ffn.fc1", "mlp.c_proj": "ffn.fc2"}
    for i in range(config.n_layers):
        for hf, ours in parts.items():
            w, b = ("gamma", "beta") if ours.startswith("ln") else ("W", "b")
            names[f"h.{i}.{hf}.weight"] = (f"blocks.{i}.{ours}.{w}", False)
            names[f"h.{i}.{hf}.bias"] = (f"blocks.{i}.{ours}.{b}", False)
    if not config.tie_weights:
        names["lm_head.weight"] = ("head.W", True)         # (V, C) in the file, (C, V) ours
    return names


def expected_shapes(config):
    """{HF name: shape} the file must hold, derived from the config alone (nothing allocated)."""
    C, F, V, T = config.d_model, config.d_ff, config.vocab_size, config.max_len
    per = {"ln_1": [(C,), (C,)], "attn.c_attn": [(C, 3 * C), (3 * C,)], "attn.c_proj": [(C, C), (C,)],
           "ln_2": [(C,), (C,)], "mlp.c_fc": [(C, F), (F,)], "mlp.c_proj": [(F, C), (C,)]}
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C), "ln_f.weight": (C,), "ln_f.bias": (C,),
              "lm_head.weight": (V, C)}
    for i in range(config.n_layers):
        for hf, (w, b) in per.items():
            shapes[f"h.{i}.{hf}.weight"], shapes[f"h.{i}.{hf}.bias"] = w, b
    return {k: shapes[k] for k in hf_names(config)}


def check_model_bytes(folder, config):
    """The float32 model config.json describes must fit MAX_MODEL_BYTES (the .npz loader's cap), checked
    from the config and the weights' header, before any tensor is read or anything is built."""
    C, F, V, T, L = config.d_model, config.d_ff, config.vocab_size, config.max_len, config.n_layers
    block = 3 * C * C + 3 * C + C * C + C + C * F + F + F * C + C + 4 * C       # qkv, proj, FFN, 2 LN
    need = 4 * ((V + T + 2) * C + L * block + (0 if config.tie_weights else V * C))   # counted, not listed
    if need > MAX_MODEL_BYTES:
        raise hf_error(folder, f"{CONFIG} describes a model of {need:,} bytes in float32, over the "
                       f"{MAX_MODEL_BYTES:,} bytes (4 GiB) glassformer loads: a model this large is refused")


def file_names(folder, st, config):
    """{HF name (no prefix): the file's key}, mask buffers dropped; refuses missing or extra tensors."""
    if config.n_layers > len(st.entries):                  # before listing n_layer's names: 10**12 hangs
        raise hf_error(folder, f"{CONFIG}: n_layer = {config.n_layers:,} needs {PER_LAYER} tensors a layer "
                       f"but {WEIGHTS} holds {len(st.entries):,} in all (n_layer wrong, or not GPT-2?)")
    found = {}
    for key in st.keys():
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if MASK_BUFFER.fullmatch(name):
            continue                                        # the causal mask: we build our own
        if name in found:
            raise hf_error(folder, f"{WEIGHTS} holds {name!r} twice ({found[name]!r} and {key!r})")
        found[name] = key
    want = hf_names(config)
    if config.tie_weights and "lm_head.weight" in found:   # some writers keep the tied copy
        want = dict(want, **{"lm_head.weight": ("tied", False)})
    extra = sorted(set(found) - set(want))
    missing = sorted(set(want) - set(found))
    if missing or extra:
        raise hf_error(folder, f"{WEIGHTS} does not match a {config.n_layers}-layer GPT-2: missing "
                       f"{missing[:5]}, unexpected {extra[:5]} (n_layer in {CONFIG} wrong, or not GPT-2?)")
    return found


def check_tensors(folder, st, found, config):
    """Every tensor floating point and of the shape the config implies, before anything is built."""
    shapes = dict(expected_shapes(config), **{"lm_head.weight": (config.vocab_size, config.d_model)})
    for name, key in found.items():
        e = st.entries[key]
        if e.dtype not in FLOAT_DTYPES:
            raise hf_error(folder, f"tensor {key!r} is {e.dtype}; weights must be {', '.join(FLOAT_DTYPES)}")
        if e.shape != shapes[name]:
            raise hf_error(folder, f"tensor {key!r} has shape {list(e.shape)}, {CONFIG} implies "
                           f"{list(shapes[name])}")


def read_weight(folder, st, key):
    """One tensor as float32 (an F32 one: a view of the mapped file), refusing NaN, inf or F64 values
    beyond float32's range (inf once cast).

    The check sums each tile: a NaN or inf makes the sum NaN or inf, so a finite sum clears the tile
    in one SIMD pass that writes nothing (GPT-2: 0.10 -> 0.075 s of CPU, of which 0.046 s is the
    first reading of the file's pages); a sum that overflowed is checked number by number."""
    with np.errstate(over="ignore", invalid="ignore"):      # no RuntimeWarning: refused just below
        a = st.read(key).astype(np.float32, copy=False)
        flat = a.reshape(-1)
        for i in range(0, flat.size, FINITE_TILE):          # tiles: no 124 MB boolean temporary
            tile = flat[i:i + FINITE_TILE]
            if not np.isfinite(np.add.reduce(tile)) and not np.isfinite(tile).all():
                raise hf_error(folder, f"tensor {key!r} holds NaN or inf values (or values beyond "
                               "float32's range)")
    return a


def owners(model):
    """{dotted parameter name: (layer, attribute)}: where set_weights puts each parameter."""
    out = {}
    for layer in model.sublayers():
        for name, (p, _) in layer.own_parameters().items():
            if getattr(layer, name, None) is p:
                out[id(p)] = (layer, name)
    return {dotted: out[id(p)] for dotted, (p, _) in model.named_parameters()}


def load_hf_gpt2(folder):
    """(model, config, meta) of a Hugging Face GPT-2 folder; meta makes it an lm checkpoint."""
    folder = Path(folder)
    d = read_hf_config(folder)
    config = config_from_hf(folder, d)
    if not os.path.lexists(folder / WEIGHTS):                # a FIFO: SafeTensors refuses it by name
        other = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.index.json")]
        raise hf_error(folder, f"no {WEIGHTS}" + (f" (found {', '.join(sorted(other))}: glassformer "
                       "reads one unsharded safetensors file, never a pickle; write one with "
                       "save_pretrained(dir, safe_serialization=True, max_shard_size='100GB'))"
                       if other else ""))
    st = SafeTensors(folder / WEIGHTS)
    found = file_names(folder, st, config)
    check_model_bytes(folder, config)                       # before anything is built: the 4 GiB cap
    check_tensors(folder, st, found, config)
    tokenizer = folder_tokenizer(folder)
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise hf_error(folder, f"its tokenizer has {tokenizer.vocab_size:,} tokens but the model only "
                       f"{config.vocab_size:,} embedding rows")
    if tokenizer is not None:
        note_padding(folder, tokenizer.vocab_size, config.vocab_size)
    model = DecoderLM(config, Undrawn())                   # not laid flat: that would copy 500 MB
    where = owners(model)
    for name, (ours, transposed) in hf_names(config).items():
        a = read_weight(folder, st, found[name])          # F32: a view of the file, read on first use
        layer, attr = where[ours]
        setattr(layer, attr, np.ascontiguousarray(a.T) if transposed else a)
    if config.tie_weights and "lm_head.weight" in found:
        if not np.array_equal(read_weight(folder, st, found["lm_head.weight"]), model.tok_emb.W):
            raise hf_error(folder, "tie_word_embeddings is true but lm_head.weight differs from wte: "
                           "set tie_word_embeddings false in config.json to load the separate head")
    meta = {"format": "huggingface-gpt2", "version": 1, "config": config.to_dict(),
            "tokenizer": tokenizer.to_dict() if tokenizer else None,
            "task": {"name": "lm", "context": config.max_len}, "step": 0, "metrics": {},
            "extra": {"source": str(folder), "hf_config": {k: d.get(k) for k in ("bos_token_id",
                                                                                 "eos_token_id")}}}
    return model, config, meta


def folder_tokenizer(folder):
    """Our tokenizer.glassformer.json, else vocab.json + merges.txt, else encoder.json + vocab.bpe, else None."""
    folder = Path(folder)
    # lexists, not is_file: a FIFO vocab.json or merges.txt -> /dev/zero is refused, never silently skipped
    if os.path.lexists(folder / OUR_TOKENIZER):
        return load_tokenizer(folder / OUR_TOKENIZER)
    for vocab, merges in TOKENIZER_PAIRS:
        if os.path.lexists(folder / vocab) and os.path.lexists(folder / merges):
            return ByteLevelBPE.from_hf(folder / vocab, folder / merges)   # read_json: one clear error
    return None


# ---- out: our model -> a GPT-2 folder ----------------------------------------------------------

def exportable(config):
    """None when a config is a GPT-2 (so HF can compute it), else why not, in words."""
    if not isinstance(config, ModelConfig) or config.kind != "decoder_lm":
        return f"its model ({getattr(config, 'kind', type(config).__name__)}) is not a decoder LM"
    wrong = [f"{k}={getattr(config, k)!r} (GPT-2: {v!r})" for k, v in
             {"norm_first": True, "positional": "learned", "activation": "gelu"}.items()
             if getattr(config, k) != v]
    return "; ".join(wrong) or None


def hf_state(model):
    """{HF name: float array} of a GPT-2-shaped DecoderLM, with GPT2LMHeadModel's prefix."""
    params = {name: np.asarray(p) for name, (p, _) in model.named_parameters()}
    for i, block in enumerate(model.blocks):                # three projections: fuse them as c_attn is
        if not block.attn.fused_qkv:
            for part in ("W", "b"):
                params[f"blocks.{i}.attn.qkv.{part}"] = np.concatenate(
                    [params.pop(f"blocks.{i}.attn.{x}_proj.{part}") for x in "qkv"], axis=-1)
    out, shapes = {}, expected_shapes(model.config)
    for name, (ours, transposed) in hf_names(model.config).items():
        a = params.pop(ours, None)
        if a is None and name.endswith(".bias"):            # bias=False: GPT-2's biases are zeros
            a = np.zeros(shapes[name], np.float32)
        out[name if name == "lm_head.weight" else PREFIX + name] = a.T if transposed else a
    if params:
        raise UserError(f"parameters GPT-2 has no place for: {sorted(params)[:5]}")
    return out


def special_id(tokenizer, name="<|endoftext|>"):
    """The id of a special token of a tokenizer, or None."""
    specials = getattr(tokenizer, "specials", None)
    return specials.get(name) if isinstance(specials, dict) else None


def hf_config(config, tokenizer=None):
    """config.json for transformers' GPT2LMHeadModel."""
    eos = special_id(tokenizer)
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": config.d_model,
            "n_head": config.n_heads, "n_layer": config.n_layers, "n_positions": config.max_len,
            "n_ctx": config.max_len, "n_inner": None if config.d_ff == 4 * config.d_model else config.d_ff,
            "vocab_size": config.vocab_size, "layer_norm_epsilon": config.norm_eps,
            "activation_function": "gelu_new", "tie_word_embeddings": config.tie_weights,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "scale_attn_weights": True,
            "bos_token_id": eos, "eos_token_id": eos, "torch_dtype": "float32"}


def bpe_files(tokenizer):
    """(vocab.json text, merges.txt text) of a byte-level BPE, or None when they cannot hold it."""
    if not isinstance(tokenizer, ByteLevelBPE):
        return None
    table, names = bytes_to_unicode(), {i: s for s, i in tokenizer.specials.items()}
    tokens = [names.get(i) or "".join(table[b] for b in tokenizer.token_bytes(i))
              for i in range(tokenizer.vocab_size)]
    merged = {tokens[new] for _, _, new in tokenizer.merges}
    if len(set(tokens)) != len(tokens) or any(len(s) < 2 or s in merged for s in names.values()):
        return None                                         # repeated tokens: vocab.json is a dict
    vocab = json.dumps({s: i for i, s in enumerate(tokens)}, ensure_ascii=False)
    merges = "#version: 0.2\n" + "".join(f"{tokens[a]} {tokens[b]}\n" for a, b, _ in tokenizer.merges)
    return vocab, merges


def save_hf_gpt2(folder, model, tokenizer=None, dtype="F32"):
    """Write a GPT-2 folder (each file atomically); returns the names of the files written."""
    why = exportable(model.config)
    if why:
        raise UserError(f"cannot export as GPT-2: {why}")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{folder}: cannot create the folder ({e.strerror or e})") from None
    save_safetensors(folder / WEIGHTS, hf_state(model), metadata={"format": "pt"}, dtype=dtype)
    write_text(folder / CONFIG, json.dumps(hf_config(model.config, tokenizer), indent=2) + "\n")
    written = [CONFIG, WEIGHTS]
    files = bpe_files(tokenizer)
    if files is not None:
        write_text(folder / "vocab.json", files[0])
        write_text(folder / "merges.txt", files[1])
        written += ["vocab.json", "merges.txt"]
        eos = "<|endoftext|>" if special_id(tokenizer) is not None else None
        write_text(folder / "tokenizer_config.json", json.dumps(
            {"tokenizer_class": "GPT2Tokenizer", "model_max_length": model.config.max_len,
             "bos_token": eos, "eos_token": eos, "unk_token": eos}, indent=2) + "\n")
        written.append("tokenizer_config.json")
    elif tokenizer is not None:
        tokenizer.save(folder / OUR_TOKENIZER)
        written.append(OUR_TOKENIZER)
    for stale in {OUR_TOKENIZER, "vocab.json", "merges.txt", "tokenizer_config.json"} - set(written):
        if (folder / stale).exists():                       # from an earlier export: would be read
            (folder / stale).unlink()
    return written
