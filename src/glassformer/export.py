"""python -m glassformer.export CHECKPOINT OUT_DIR: a glassformer decoder LM as a Hugging Face GPT-2 folder.

The folder (config.json, model.safetensors, and vocab.json + merges.txt for a byte-level BPE) loads
with transformers' GPT2LMHeadModel.from_pretrained(OUT_DIR) and with glassformer's load_checkpoint.
A char or word tokenizer, which GPT-2's files cannot hold, is written as tokenizer.glassformer.json.
"""
import sys

from pathlib import Path

from .checkpoint import RUN_FILES, load_checkpoint, needs_task
from .checkpoint.hf_gpt2 import CONFIG, OUR_TOKENIZER, WEIGHTS, exportable, is_hf_folder, save_hf_gpt2
from .errors import UserError
from .files import folder_swap
from .tokenizers import tokenizer_from_dict
from .tokenizers.registry import KINDS

DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
EXPORT_FILES = (CONFIG, WEIGHTS, OUR_TOKENIZER, "vocab.json", "merges.txt", "tokenizer_config.json")


def check_destination(out_dir):
    """out_dir may be new, empty or an HF folder; a run folder's config.json or best.npz is never replaced."""
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{out_dir}: is not a folder (a {'symlink' if out.is_symlink() else 'file'}): "
                        "export into a new folder")
    if any((out / name).exists() for name in RUN_FILES) or \
            ((out / CONFIG).exists() and not is_hf_folder(out)):
        raise UserError(f"{out_dir}: holds a glassformer run (its {CONFIG} or checkpoints would be "
                        "replaced or hidden): export into a new folder")


def export(checkpoint, out_dir, dtype="float32", stdout=None):
    """Load `checkpoint`, refuse what GPT-2 cannot compute, write out_dir; returns the file names."""
    stdout = sys.stdout if stdout is None else stdout
    check_destination(out_dir)
    with needs_task("lm"):
        ckpt = load_checkpoint(checkpoint, optimizer=False)
    why = exportable(ckpt.config)
    if why:
        raise UserError(f"{checkpoint}: cannot export as GPT-2: {why} (GPT-2 is a pre-LN decoder with "
                        "learned positions, LayerNorm, tanh GELU and biases)")
    saved = ckpt.tokenizer
    tok = tokenizer_from_dict(saved, where=f"{checkpoint}: the tokenizer") \
        if isinstance(saved, dict) and saved.get("type") in KINDS else None
    with folder_swap(out_dir, drop=EXPORT_FILES) as tmp:   # the old export or the new, whole, always
        files = save_hf_gpt2(tmp, ckpt.model, tok, dtype=DTYPES[dtype])
    c = ckpt.config
    print(f"wrote {out_dir}: {', '.join(files)} ({ckpt.model.n_parameters():,} parameters as {dtype}; "
          f"{c.n_layers} layers, d_model {c.d_model}, {c.n_heads} heads, context {c.max_len}, "
          f"vocab {c.vocab_size:,}, {'tied' if c.tie_weights else 'untied'} head)", file=stdout)
    if OUR_TOKENIZER in files:
        print(f"note: its {tok.type} tokenizer cannot be written as GPT-2's vocab.json + merges.txt; it "
              f"is in {OUR_TOKENIZER} (glassformer reads it; transformers needs your own tokenizer)",
              file=stdout)
    elif tok is None:
        print("note: the checkpoint holds no tokenizer, so only the weights were written", file=stdout)
    return files


if __name__ == "__main__":             # python -m glassformer.export: the command is in cli/
    from .cli.export import main
    raise SystemExit(main())
