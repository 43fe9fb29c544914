"""--task lm's run, built, resumed and summarised (and the parts --task qa shares): its settings from
the flags or the checkpoint, the tokenizer, the text, the model, the Trainer, summary.json.

cli/lm.py parses the flags and prints; this module makes the run. Under mpiexec the ranks agree on
each input before any collective (train/agree.py).
"""
import os
import shlex
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import backend, precision
from ..checkpoint import load_checkpoint, read_meta
from ..data import lm_batches, open_source
from ..data.fetch import fetch_command, gpt2_folder
from ..errors import UserError
from ..generate import eos_id, generate_text
from ..layers.loss import CrossEntropyLoss
from ..models import build_model
from ..models.arithmetic import check_batch_memory, flops_per_token
from ..models.config import PRESETS, lm_config
from ..tokenizers import ByteLevelBPE, CharTokenizer, load_tokenizer, tokenizer_from_dict
from ..tokenizers.bpe_train import text_stream
from ..train import agree, parallel
from ..train.progress import wrap
from ..train.records import write_json
from ..train.config import (TrainConfig, default_log_interval, default_min_lr, flag_defaults,
                            may_change, settings_info)
from ..train.trainer import Trainer
from .init_from import init_settings, load_init
from .lm_data import DATA_KEYS, check_text, evaluate_test, load_text, require_splits, resolve_data

GPT2_FILES = ("encoder.json", "vocab.bpe")
TOKENIZERS = ("char", "bpe", "gpt2")
# a --task lm flag left out takes this value (None: derived, see complete_settings); the training
# settings' defaults are TrainConfig's own (train/config.py), so the flag and the Trainer cannot disagree
FLAG_DEFAULTS = {"data": None, "val_data": None, "test_data": None, "tokenizer": "char", "bpe_vocab": 1024,
                 "preset": "tiny", "no_bias": False, "context": None, "dropout": 0.0, "batch_size": 16,
                 **flag_defaults(), "precision": "fp32", "init_from": None}
# settings only rank 0 reads (its progress lines, samples and validation): ranks need not agree on them
RANK_LOCAL = ("log_interval", "sample_every", "eval_batches")
# what a rank says when the ranks' files differ (agree.agreement in build_trainer)
SAME_FILES = ("give every rank the same files (--data, --resume, --init-from, the tokenizer's): the same "
              "path may hold other bytes on another machine")
# what --resume may change: the length and the bookkeeping (each TrainConfig field's resume rule), and
# the data paths (the same files, moved); not the run
MAY_CHANGE = may_change() + DATA_KEYS


# ---- tokenizers ----------------------------------------------------------------------------

def gpt2_dirs():
    """Where GPT-2's files are looked for: ./gpt2-tokenizer, then the data cache's gpt2-tokenizer/."""
    return (Path("gpt2-tokenizer"), gpt2_folder())


def gpt2_tokenizer():
    """GPT-2's tokenizer from encoder.json + vocab.bpe, looked for in gpt2_dirs()."""
    for d in gpt2_dirs():
        if all((d / f).exists() for f in GPT2_FILES):
            return ByteLevelBPE.from_gpt2(d / GPT2_FILES[0], d / GPT2_FILES[1])
    raise UserError("--tokenizer gpt2: GPT-2's encoder.json and vocab.bpe were not found in "
                    f"{' or '.join(str(d) for d in gpt2_dirs())}: fetch them with "
                    f"`{fetch_command('gpt2-tokenizer')}`")


def build_tokenizer(kind, data, bpe_vocab, stream, more=()):
    """A tokenizer for the text at `data`: its characters (and those of `more`), BPE trained on it,
    GPT-2's, or a file."""
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind not in TOKENIZERS:
        if not os.path.lexists(kind):                        # a FIFO: load_tokenizer refuses it
            raise UserError(f"--tokenizer {kind}: use char, bpe, gpt2 or the path of a tokenizer .json")
        return load_tokenizer(kind)
    if kind == "char":                                      # validation/test characters too: no unknowns
        chars = set()
        for doc in (d for path in (data, *more) for d in open_source(path)):
            chars.update(doc)
        if not chars:
            raise UserError(f"{data}: no text found to build a character vocabulary from")
        return CharTokenizer(sorted(chars))
    print(wrap(f"training a byte-level BPE of {bpe_vocab} tokens on {data} ..."), file=stream, flush=True)
    return ByteLevelBPE.train(text_stream(open_source(data)), bpe_vocab, progress=True)   # meter on stderr


# ---- settings: from flags, or from the checkpoint on --resume ----------------------------------

def is_lm_checkpoint(path, name="lm"):
    """True when path is a checkpoint written by --task lm (or `name`: qa), read from its header only."""
    if path is None:
        return False
    meta, _ = read_meta(path)
    return isinstance(meta.get("task"), dict) and meta["task"].get("name") == name


def complete_settings(s):
    """The derived defaults filled in (context, min_lr, log_interval), data paths resolved, and checked."""
    s = resolve_data(s)
    s["context"] = s["context"] or PRESETS[s["preset"]]["max_len"]
    s["min_lr"] = default_min_lr(s["lr"]) if s["min_lr"] is None else s["min_lr"]
    s["log_interval"] = s["log_interval"] or default_log_interval(s["steps"])
    if s["min_lr"] > s["lr"]:
        raise UserError(f"--min-lr {s['min_lr']:g} is above --lr {s['lr']:g}: the cosine goes down to it")
    return s


def resolve_lm_settings(args, name="lm", defaults=FLAG_DEFAULTS, example="tinyshakespeare (a data set "
                        "fetched once with python -m glassformer.data fetch tinyshakespeare) or your own text"):
    """(settings dict, checkpoint or None) of --task lm (or `name`, whose flags are `defaults`); flags
    that would change a resumed run are UserErrors."""
    given = {k: getattr(args, k) for k in defaults if getattr(args, k, None) is not None}
    if args.resume is None:
        if "data" not in given:
            raise UserError(f"--task {name} needs --data PATH, e.g. --data {example}")
        return complete_settings(init_settings(dict(defaults, **given), given)), None
    ckpt = load_checkpoint(args.resume)
    task = ckpt.task if isinstance(ckpt.task, dict) else {}
    if task.get("name") != name or not task.get("settings") or not ckpt.optimizer_state:
        raise UserError(f"{args.resume}: not a resumable --task {name} checkpoint (no run settings or "
                        "optimizer state); start a new run instead")
    saved = dict(defaults, **task["settings"])              # older runs lack the newer keys
    saved["min_lr"] = default_min_lr(saved["lr"]) if saved["min_lr"] is None else saved["min_lr"]
    for key, value in given.items():
        if key not in MAY_CHANGE and value != saved[key]:
            flag = "--" + key.replace("_", "-")
            what = "was not given to the resumed run" if isinstance(value, bool) else \
                f"{value} differs from the resumed run's {saved[key]}"
            raise UserError(f"{flag} {what}: drop {flag} "
                            f"(--resume reads the run's settings; it may change only "
                            f"{', '.join('--' + k.replace('_', '-') for k in MAY_CHANGE)})")
    s = complete_settings(dict(saved, **{k: v for k, v in given.items() if k in MAY_CHANGE}))
    if s["steps"] <= ckpt.step:
        raise UserError(f"{args.resume} is already at step {ckpt.step}: pass --steps N with N > "
                        f"{ckpt.step} to train more")
    return s, ckpt


# ---- the run ----------------------------------------------------------------------------------

def train_config(s, out):
    """The Trainer's settings: the run's of the same names, the warm-up at most half the steps, last.npz
    saved at each validation, the files in `out`."""
    named = {k: s[k] for k in settings_info() if k in s}
    return TrainConfig(**dict(named, warmup=min(s["warmup"], s["steps"] // 2),
                              checkpoint_interval=s["eval_interval"], out_dir=out and str(out)))


def model_config_of(s, vocab_size):
    """The ModelConfig of a new DecoderLM: the run's --preset, --context, --dropout and --no-bias."""
    return lm_config(s["preset"], vocab_size, max_len=s["context"], dropout=s["dropout"], bias=not s["no_bias"])


def new_model(s, vocab_size):
    """A new DecoderLM of the run's settings (model_config_of), seeded by --seed."""
    return build_model(model_config_of(s, vocab_size), np.random.default_rng(s["seed"]))


# ---- what lm and qa runs share: where a run starts, its model, its Trainer ---------------------

def starting_tokenizer(s, ckpt, make_tokenizer):
    """(tokenizer, --init-from's model or None): the checkpoint's, --init-from's, or make_tokenizer()."""
    init = load_init(s) if ckpt is None and s.get("init_from") else None   # --init-from (init_from.py)
    tok = tokenizer_from_dict(ckpt.tokenizer) if ckpt else init.tokenizer if init else make_tokenizer()
    return tok, init


def check_memory(s, ckpt, init, tok):
    """UserError when a micro-batch's activations would not fit (models/arithmetic.py)."""
    check_batch_memory(model_config_of(s, tok.vocab_size) if ckpt is None and init is None else
                       (ckpt or init).model.config, s["batch_size"], s["context"])


def starting_model(s, ckpt, init, tok):
    """The model the run trains: a new one of the settings, the checkpoint's or --init-from's."""
    return new_model(s, tok.vocab_size) if ckpt is None and init is None else (ckpt or init).model


def make_trainer(s, out, stream, model, loss_fn, batches, val_batches, tok, task, ckpt=None,
                 peak_flops=None, trainer_class=Trainer, **extra):
    """The run's Trainer (trainer_class: qa's QATrainer), resumed from ckpt when there is one."""
    precision.use(s["precision"])                           # before the Trainer: fp16 makes its loss scaler
    c = model.config
    trainer = trainer_class(model, loss_fn, batches, train_config(s, out), val_batches=val_batches,
                            tokenizer=tok, task=task, log=stream, peak_flops=peak_flops,
                            flops_per_token=flops_per_token(model.n_parameters(), c.n_layers, c.d_model,
                                                            s["context"]), **extra)
    if ckpt is not None:                                    # --steps N extends: the cosine then ends at N
        trainer.resume(ckpt, extend=True)
    return trainer


# ---- --task lm --------------------------------------------------------------------------------

def build_trainer(s, out, stream, ckpt=None, peak_flops=None):
    """(trainer, tokenizer, test tokens or None) for settings s; on resume from the checkpoint. Under
    mpiexec the ranks first agree on the tokenizer, the tokens and the model (agree.agreement):
    the gradient buffer's size follows the vocabulary, so a difference would truncate or hang."""
    with agree.agreement(parallel.world().mpi, SAME_FILES) as agreed:
        tok, corpus, test, model = build_inputs(s, ckpt, stream, agreed)
    T, B = s["context"], s["batch_size"]
    task = {"name": "lm", "settings": s, "context": T, "n_train_tokens": len(corpus.train),
            "n_val_tokens": len(corpus.val), "n_test_tokens": None if test is None else len(test),
            "first_val_token": int(corpus.val[0])}
    trainer = make_trainer(s, out, stream, model, CrossEntropyLoss(), lm_batches(corpus.train, B, T),
                           lm_batches(corpus.val, B, T), tok, task, ckpt, peak_flops)
    return trainer, tok, test


def build_inputs(s, ckpt, stream, agreed):
    """(tokenizer, corpus, test tokens, model) of settings s; each added to `agreed` as it is made."""
    more = [s[k] for k in ("val_data", "test_data") if s[k] is not None]
    if ckpt is None and not s.get("init_from"):             # before the data is read: a vocabulary of 1
        check_batch_memory(model_config_of(s, 1), s["batch_size"], s["context"])
    tok, init = starting_tokenizer(s, ckpt, lambda: build_tokenizer(s["tokenizer"], s["data"],
                                                                    s["bpe_vocab"], stream, more))
    agreed.add("the vocabulary size", tok.vocab_size)
    agreed.add("the tokenizer", lambda: agree.digest(tok.to_dict()))
    corpus, test = load_text(s, tok)
    require_splits(s, corpus, test, tok)                    # context + 1 tokens in each split
    check_memory(s, ckpt, init, tok)
    agreed.add("the training tokens", lambda: agree.digest(corpus.train))
    agreed.add("the validation tokens", lambda: agree.digest(corpus.val))
    agreed.add("the test tokens", lambda: None if test is None else agree.digest(test))
    model = starting_model(s, ckpt, init, tok)
    if ckpt is not None and parallel.launched_size() > 1:   # prepare_lm read it to the host: to this
        model.to(backend.current())                         # rank's device (its GPU: parallel.world)
    for key, value in model.config.to_dict().items():
        agreed.add(f"the model's {key}", value)
    agreed.add("the model's starting weights",
               lambda: agree.digest(*(p for p, _ in model.get_parameters())))
    agreed.add("the resumed step", ckpt and ckpt.step)
    return tok, corpus, test, model


def first_window(trainer):
    """(x, y) of the first training batch, drawn without moving the run's generator."""
    peek = np.random.default_rng()
    peek.bit_generator.state = trainer.rng.bit_generator.state   # the batch step 1 will draw
    return trainer.batches(peek)


def prepare_lm(args, agreed):
    """(settings, checkpoint) of --task lm, checked before anything is made; each setting the ranks of
    mpiexec must share is added to `agreed` (all but RANK_LOCAL) before the checks that may refuse it."""
    device = backend.current()
    if parallel.launched_size() > 1:                        # no GPU is bound yet (parallel.world): a
        backend.use("cpu")                                  # resumed model is read to the host
    try:
        s, ckpt = resolve_lm_settings(args)
    finally:
        backend.use(device)
    for key, value in s.items():
        if key not in RANK_LOCAL:
            agreed.add("--" + key.replace("_", "-"), value)
    for key in DATA_KEYS:
        if s[key] is not None:
            check_text(s[key])                              # before the run directory is made
    parallel.row_bounds(s["batch_size"], parallel.launched_size())   # every rank needs a row
    return s, ckpt


def lm_report(trainer, tok, test, s, out, summary, stream):
    """What summary.json adds for --task lm: a sample from best.npz and, with --test-data, its test scores."""
    if not (out / "best.npz").exists():
        return {"sample": None}
    best = load_checkpoint(out / "best.npz", optimizer=False).model
    prompt = "" if eos_id(tok) is not None else tok.decode([trainer.task["first_val_token"]])
    sample = prompt + generate_text(best, tok, prompt, 200, temperature=0.8, seed=s["seed"])
    if test is None or summary["interrupted"]:
        return {"sample": sample}
    return {"sample": sample, **evaluate_test(best, test, s["test_data"], s["context"], stream)}


def write_summary(summary, trainer, s, args, argv, out, task, **report):
    """summary.json: the Trainer's summary, the command, the report, the config and the files (lm, qa)."""
    summary.update(task=task, command="python train_step_by_step.py " + shlex.join(argv),
                   date=datetime.now().isoformat(timespec="seconds"), **report,
                   resumed_from=str(args.resume) if args.resume else None,
                   config={"model": trainer.model.config.to_dict(), "settings": s,
                           "training": asdict(trainer.config)},
                   files=sorted({p.name for p in out.iterdir()
                                 if p.suffix in (".npz", ".csv", ".png")} | {"config.json", "summary.json"}))
    write_json(out / "summary.json", summary)


