"""--init-from DIR of --task lm: fine-tune a model that exists, as nanoGPT's init_from="gpt2" does.

DIR is a Hugging Face GPT-2 folder or one of our lm checkpoints (file or run folder). The weights,
the tokenizer and the context limit come from it; the optimizer, the schedule and the run are new.
"""
from collections import namedtuple
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..checkpoint import checkpoint_file, load_checkpoint, model_config, needs_task, read_meta
from ..checkpoint.hf_gpt2 import config_from_hf, is_hf_folder, read_hf_config
from ..errors import UserError
from ..models import ModelConfig, build_model
from ..tokenizers import tokenizer_from_dict

CONFLICTS = ("preset", "no_bias", "tokenizer", "bpe_vocab")  # what DIR decides instead
Init = namedtuple("Init", "model tokenizer")


def init_config(path):
    """The ModelConfig saved in DIR, read from its header or config.json only (no weights)."""
    if is_hf_folder(path):
        config = config_from_hf(path, read_hf_config(path))
    else:
        file = checkpoint_file(path)
        with needs_task("lm"):
            meta, archive = read_meta(file)
        with archive:
            config, _ = model_config(file, meta)
    if not isinstance(config, ModelConfig) or config.kind != "decoder_lm":
        raise UserError(f"--init-from {path}: not a language model (a {type(config).__name__} of kind "
                        f"{getattr(config, 'kind', None)!r}); give a GPT-2 folder or a --task lm checkpoint")
    return config


def init_settings(s, given):
    """The run's settings with --init-from DIR: its context by default and at most; no preset or tokenizer."""
    if s.get("init_from") is None:
        return s
    path = Path(s["init_from"])
    clash = [k for k in CONFLICTS if k in given]
    if clash:
        flags = " and ".join("--" + k.replace("_", "-") for k in clash)
        raise UserError(f"--init-from {path} takes the model and its tokenizer from there: drop {flags}")
    limit = init_config(path).max_len
    if s["context"] is not None and s["context"] > limit:
        raise UserError(f"--context {s['context']} is longer than the {limit} positions the model of "
                        f"--init-from {path} has: give --context {limit} or less")
    return dict(s, init_from=str(path.resolve()), context=s["context"] or limit,
                preset=None, no_bias=None, tokenizer=None, bpe_vocab=None)


def load_init(s):
    """(model, tokenizer) of --init-from, with the run's --dropout (rebuilt when it differs)."""
    with needs_task("lm"):
        ckpt = load_checkpoint(s["init_from"], optimizer=False)
    if not ckpt.tokenizer:
        raise UserError(f"--init-from {s['init_from']}: it holds no tokenizer (no vocab.json + merges.txt "
                        "or tokenizer.glassformer.json), so the text cannot be turned into its ids")
    tok = tokenizer_from_dict(ckpt.tokenizer, where=f"--init-from {s['init_from']}: the tokenizer")
    model = ckpt.model
    if ckpt.config.dropout != s["dropout"]:
        model = build_model(replace(ckpt.config, dropout=s["dropout"]), np.random.default_rng(s["seed"]))
        model.load_state_dict(ckpt.model.state_dict())
    return Init(model, tok)
