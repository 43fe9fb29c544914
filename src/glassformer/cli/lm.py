"""--task lm of train_step_by_step.py: a decoder LM on your text, trained, walked through, summarised.

  python train_step_by_step.py --config configs/shakespeare_char.json
  python -m glassformer.data fetch tinyshakespeare      # once: into the data cache
  python train_step_by_step.py --task lm --data tinyshakespeare \\
      --tokenizer char --preset tiny --context 64 --steps 2000
"""
import os
import shlex
import sys
import textwrap
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import backend, precision
from ..checkpoint import load_checkpoint, read_meta
from ..data import lm_batches, open_source
from ..data.fetch import fetch_command, gpt2_folder
from ..errors import UserError
from ..explain.page import write_step_page
from ..generate import eos_id, generate_text
from ..layers.loss import CrossEntropyLoss
from ..models import build_model
from ..models.arithmetic import check_batch_memory, flops_per_token, lm_parameters, presets_table  # noqa: F401
from ..models.config import PRESETS, lm_config
from ..tokenizers import ByteLevelBPE, CharTokenizer, load_tokenizer, tokenizer_from_dict
from ..tokenizers.bpe_train import text_stream
from ..train import agree, parallel, zero
from ..train.records import with_run_id, write_json
from ..train.step import Diverged
from ..train.progress import fold, shell_wrap, si, wrap
from ..train.trainer import TrainConfig, Trainer, perplexity
from .common import (CONTEXT, EXIT_INTERRUPTED, EXIT_USER_ERROR, FRACTION, LEARNING_RATE, Domain,
                     TokenNames, make_run_dir, matmul_rate, run_dir, unicode_ok)
from .config import run_config
from .init_from import init_settings, load_init
from .lm_data import (DATA_KEYS, check_text, evaluate_test, format_test, load_text, require_splits,
                      resolve_data)
from .walkthrough import walk

TOKENIZERS = ("char", "bpe", "gpt2")
GPT2_FILES = ("encoder.json", "vocab.bpe")
# a --task lm flag left out takes this value (None: derived, see complete_settings)
FLAG_DEFAULTS = {"data": None, "val_data": None, "test_data": None, "tokenizer": "char", "bpe_vocab": 1024,
                 "preset": "tiny", "no_bias": False, "context": None, "dropout": 0.0, "batch_size": 16,
                 "grad_accum": 1, "steps": 1000, "lr": 1e-3, "min_lr": None, "warmup": 100,
                 "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0, "eval_interval": 100,
                 "eval_batches": 20, "log_interval": None, "sample_every": 0, "max_time": None, "seed": 0,
                 "precision": "fp32", "init_from": None, "zero_stage": 0}
# settings only rank 0 reads (its progress lines, samples and validation): ranks need not agree on them
RANK_LOCAL = ("log_interval", "sample_every", "eval_batches")
# what a rank says when the ranks' files differ (agree.agreement in build_trainer)
SAME_FILES = ("give every rank the same files (--data, --resume, --init-from, the tokenizer's): the same "
              "path may hold other bytes on another machine")
# what --resume may change: the length and the bookkeeping (paths: the same files, moved); not the run
MAY_CHANGE = ("steps", "eval_interval", "log_interval", "sample_every", "max_time", "zero_stage") + DATA_KEYS
STEPS = Domain(int, 1, 10**9)                               # updates; warm-up and intervals as far
SECONDS = Domain(float, 1e-3, 1e7)                          # --max-time: a millisecond to 115 days
ZERO = Domain(int, 0, 1)                                    # --zero-stage
EVERY = Domain(int, 0, STEPS.high)                          # steps between two things; 0: never (or at the end)
# (flag, type, metavar, help) of the flags only --task lm reads; a number's type is its domain
LM_FLAGS = (
    ("--data", Path, "PATH", "text to train on: a .txt file or folder, WikiText, a Wikipedia .xml(.bz2) "
     "dump, .jsonl, TinyStories; the last 10%% is validation unless --val-data is given. A folder holding "
     "train/valid(/test) files (WikiText) uses them as the three splits. A data set's name (tinyshakespeare, "
     "wikitext-2, wikipedia-sample) reads it from the data cache: python -m glassformer.data fetch NAME. "
     "Each file is read up to 2 GB of text ($GLASSFORMER_READ_LIMIT: e.g. 8G, 0 for none; a note says "
     "when it stops a read)"),
    ("--val-data", Path, "FILE", "validation text (instead of the last 10%% of --data)"),
    ("--test-data", Path, "FILE", "test text, scored in full with best.npz at the end (loss, perplexity; "
     "word-level perplexity for WikiText)"),
    ("--tokenizer", None, "KIND", "char (default), bpe (trained on --data, --bpe-vocab tokens), gpt2 "
     "(GPT-2's 50,257 tokens) or a tokenizer .json saved by glassformer"),
    ("--bpe-vocab", Domain(int, 257, 2**20), "V", "vocabulary size of --tokenizer bpe (default 1024)"),
    ("--preset", None, None, "model size (default tiny; table below)"),
    ("--init-from", Path, "DIR", "fine-tune this model instead of a new one: a Hugging Face GPT-2 folder "
     "(config.json + model.safetensors) or a --task lm checkpoint; its tokenizer and context (the "
     "default and the longest --context); not with --preset, --no-bias, --tokenizer or --bpe-vocab"),
    ("--no-bias", bool, None, "no biases in the Linear and LayerNorm layers, as nanoGPT's bias=False (a bit "
     "faster; default: biases, as GPT-2)"),
    ("--context", CONTEXT, "T", "tokens per training window (default: the preset's)"),
    ("--dropout", FRACTION, "P", "dropout probability (default 0)"),
    ("--steps", STEPS, "N", "optimizer updates (default 1000; with --resume, the total to reach)"),
    ("--grad-accum", Domain(int, 1, 2**16), "N", "micro-batches of --batch-size per update, their gradients summed "
     "(default 1)"),
    ("--min-lr", Domain(float, 0.0, LEARNING_RATE.high), "LR", "where the cosine ends (default --lr / 10)"),
    ("--warmup", EVERY, "N", "linear warm-up steps before the cosine (default 100)"),
    ("--weight-decay", Domain(float, 0.0, 10.0), "WD", "AdamW's decoupled decay, matrices only (default 0.1)"),
    ("--beta1", FRACTION, "B1", "AdamW's first-moment decay (default 0.9)"),
    ("--beta2", FRACTION, "B2", "AdamW's second-moment decay (default 0.99)"),
    ("--grad-clip", Domain(float, 0.0, 1e6), "NORM", "bound on the global gradient L2 norm; 0: off (default "
     "1.0)"),
    ("--eval-interval", EVERY, "N", "steps between validation passes (and last.npz saves); 0: only "
     "at the end (default 100)"),
    ("--eval-batches", Domain(int, 1, 10**6), "N", "random validation batches per pass (default 20)"),
    ("--log-interval", Domain(int, 1, STEPS.high), "N", "steps between progress lines (default steps/20, at most "
     "50)"),
    ("--sample-every", EVERY, "N", "print a 64-token sample every N steps, as llm.c does; 0: never "
     "(default)"),
    ("--precision", None, None, "fp32 (default), tf32 (cuBLAS may round float32 matmul inputs to TF32 on a "
     "GPU) or fp16 (float16 matmuls, float32 master weights, dynamic loss scaling; on the CPU through "
     "NumPy float16, slow: for checking, not speed)"),
    ("--max-time", SECONDS, "SECONDS", "stop cleanly after this much training time in this session: "
     "checkpoints saved, the summary says so; --resume goes on"),
    ("--zero-stage", ZERO, "Z", "1: under mpiexec, ZeRO-1: each process keeps AdamW's moments for its 1/N "
     "of the parameters only, and the same numbers come out; 0: every process keeps all (default 0)"),
)
WALK_TOKENS = 12                                            # tokens of the first batch walked through
# ---- flags --------------------------------------------------------------------------------------

def add_lm_arguments(parser):
    """The flags only --task lm reads; returns their names (dests), in order."""
    g = parser.add_argument_group("--task lm", textwrap.fill(
        "a decoder LM (GPT-2 style) trained with AdamW, warm-up + cosine and clipping; "
        "--batch-size counts windows of --context tokens (default 16), --lr is the peak (1e-3). "
        "Progress lines show ms per update, tokens/s and the model's FLOP/s, counted as "
        "6N + 12·L·d·T per token (N parameters, L layers, d = d_model, T = context: forward and "
        "backward), beside this machine's float32 GEMM rate measured at the start.", 76))
    for flag, kind, metavar, text in LM_FLAGS:
        if kind is bool:                                    # a switch: None, not False, when left out,
            g.add_argument(flag, action="store_true", default=None, help=text)   # as --resume checks
            continue
        options = {"choices": sorted(PRESETS)} if flag == "--preset" else \
            {"choices": sorted(precision.POLICIES)} if flag == "--precision" else \
            {"type": kind, "metavar": metavar}
        g.add_argument(flag, help=text, **{k: v for k, v in options.items() if v is not None})
    return [a.dest for a in g._group_actions]


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
    s["min_lr"] = s["lr"] / 10 if s["min_lr"] is None else s["min_lr"]
    s["log_interval"] = s["log_interval"] or max(1, min(50, s["steps"] // 20))
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
    saved["min_lr"] = saved["lr"] / 10 if saved["min_lr"] is None else saved["min_lr"]
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
    """The Trainer's settings from the run's."""
    return TrainConfig(steps=s["steps"], lr=s["lr"], min_lr=s["min_lr"],
                       warmup_steps=min(s["warmup"], s["steps"] // 2), weight_decay=s["weight_decay"],
                       beta1=s["beta1"], beta2=s["beta2"], grad_clip=s["grad_clip"],
                       accum_steps=s["grad_accum"], eval_interval=s["eval_interval"],
                       eval_batches=s["eval_batches"], log_interval=s["log_interval"],
                       checkpoint_interval=s["eval_interval"], max_time=s["max_time"] or 0.0,
                       sample_every=s["sample_every"], out_dir=out and str(out), seed=s["seed"],
                       zero_stage=s["zero_stage"])


def model_config_of(s, vocab_size):
    """The ModelConfig of a new DecoderLM: the run's --preset, --context, --dropout and --no-bias."""
    return lm_config(s["preset"], vocab_size, max_len=s["context"], dropout=s["dropout"], bias=not s["no_bias"])


def new_model(s, vocab_size):
    """A new DecoderLM of the run's settings (model_config_of), seeded by --seed."""
    return build_model(model_config_of(s, vocab_size), np.random.default_rng(s["seed"]))


def build_trainer(s, out, stream, ckpt=None, peak_flops=None):
    """(trainer, tokenizer, test tokens or None) for settings s; on resume from the checkpoint. Under
    mpiexec the ranks first agree on the tokenizer, the tokens and the model (agree.agreement):
    the gradient buffer's size follows the vocabulary, so a difference would truncate or hang."""
    with agree.agreement(parallel.world().mpi, SAME_FILES) as agreed:
        tok, corpus, test, model = build_inputs(s, ckpt, stream, agreed)
    T, B, c = s["context"], s["batch_size"], model.config
    precision.use(s["precision"])                           # before the Trainer: fp16 makes its loss scaler
    task = {"name": "lm", "settings": s, "context": T, "n_train_tokens": len(corpus.train),
            "n_val_tokens": len(corpus.val), "n_test_tokens": None if test is None else len(test),
            "first_val_token": int(corpus.val[0])}
    trainer = Trainer(model, CrossEntropyLoss(), lm_batches(corpus.train, B, T), train_config(s, out),
                      val_batches=lm_batches(corpus.val, B, T), tokenizer=tok, task=task, log=stream,
                      flops_per_token=flops_per_token(model.n_parameters(), c.n_layers, c.d_model, T),
                      peak_flops=peak_flops)
    if ckpt is not None:                                    # --steps N extends: the cosine then ends at N
        trainer.resume(ckpt, extend=True)
    return trainer, tok, test


def build_inputs(s, ckpt, stream, agreed):
    """(tokenizer, corpus, test tokens, model) of settings s; each added to `agreed` as it is made."""
    more = [s[k] for k in ("val_data", "test_data") if s[k] is not None]
    if ckpt is None and not s.get("init_from"):             # before the data is read: a vocabulary of 1
        check_batch_memory(model_config_of(s, 1), s["batch_size"], s["context"])
    init = load_init(s) if ckpt is None and s.get("init_from") else None   # --init-from (init_from.py)
    tok = tokenizer_from_dict(ckpt.tokenizer) if ckpt else init.tokenizer if init else \
        build_tokenizer(s["tokenizer"], s["data"], s["bpe_vocab"], stream, more)
    agreed.add("the vocabulary size", tok.vocab_size)
    agreed.add("the tokenizer", lambda: agree.digest(tok.to_dict()))
    corpus, test = load_text(s, tok)
    require_splits(s, corpus, test, tok)                    # context + 1 tokens in each split
    check_batch_memory(model_config_of(s, tok.vocab_size) if ckpt is None and init is None else
                       (ckpt or init).model.config, s["batch_size"], s["context"])
    agreed.add("the training tokens", lambda: agree.digest(corpus.train))
    agreed.add("the validation tokens", lambda: agree.digest(corpus.val))
    agreed.add("the test tokens", lambda: None if test is None else agree.digest(test))
    model = new_model(s, tok.vocab_size) if ckpt is None and init is None else (ckpt or init).model
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


def walk_first_batch(trainer, tok, ask, stream):
    """The stage-by-stage walk of train_step_by_step.py on the first row of the first batch."""
    x, y = first_window(trainer)
    n = min(WALK_TOKENS, x.shape[1])
    print(f"walking through the first {n} tokens of the first training window "
          f"({x.shape[0]} x {x.shape[1]} tokens per batch)", file=stream)
    return walk(trainer.model, x[:1, :n], y[:1, :n], TokenNames(tok, unicode_ok(stream)),
                trainer.loss_fn, trainer.optimizer, ask, stream, lr_at=trainer.lr_at)


def print_header(trainer, tok, s, out, resumed, stream):
    """What is being trained on what, and the FLOP count the progress lines use."""
    t, model = trainer.task, trainer.model
    splits = f"{t['n_train_tokens']:,} training and {t['n_val_tokens']:,} validation" + \
        ("" if t["n_test_tokens"] is None else f" and {t['n_test_tokens']:,} test")
    print(wrap(f"task lm: {s['data']}\n  {splits} tokens\n  {tok.type} tokenizer of {tok.vocab_size:,} "
               f"tokens; {s['preset'] + ' preset' if s['preset'] else 'initialised from ' + s['init_from']}"
               f"{'' if model.config.bias else ' without biases'}, {model.n_parameters():,} parameters, "
               f"context {s['context']}\nrun directory {out}"
               + (f"; resuming after step {trainer.step}" if resumed else ""), indent="    "), file=stream)
    print_speed(trainer, s["context"], stream)


def print_speed(trainer, context, stream):
    """The FLOP count per token the progress lines use, and the machine's measured GEMM rate."""
    model, c = trainer.model, trainer.model.config
    print(wrap(f"speed: 6N + 12·L·d·T = {si(trainer.flops_per_token, 'FLOP')} per token (N "
               f"{model.n_parameters():,}, L {c.n_layers}, d {c.d_model}, T {context})\n  this machine's "
               f"float32 GEMM, measured: {si(trainer.peak_flops, 'FLOP/s')}", indent="    "), file=stream)


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


def run_lm(args, argv, stream, interactive, ask=input, prepared=None):
    """Train a language model from the flags (walk the first batch when interactive); exit code.
    prepared: prepare_lm's (settings, checkpoint), when the caller has them."""
    s, ckpt = prepared or prepare_lm(args, agree.Agreed(False))
    comm = parallel.world()                                 # mpiexec -n N: N ranks, one global batch
    if not comm.is_root:                                    # rank 0 alone prints, evaluates and writes
        return parallel.train_only(build_trainer(s, None, open(os.devnull, "w"), ckpt)[0])
    out = run_dir(args, "lm")
    trainer, tok, test = build_trainer(s, out, stream, ckpt, peak_flops=matmul_rate())
    print_header(trainer, tok, s, out, ckpt is not None, stream)
    if comm.size > 1:
        print(wrap(parallel.describe(comm, s["batch_size"], trainer.params)), file=stream)
        if s["zero_stage"]:
            print(wrap(zero.describe(trainer.optimizer)), file=stream)
    elif s["zero_stage"]:
        print(wrap("--zero-stage 1 in one process: it keeps every moment, as without it (ZeRO-1 shards them "
                   "over the processes of mpiexec -n N)"), file=stream)
    if args.html is not None:                               # the first window's step as a page
        x, y = first_window(trainer)
        size = write_step_page(args.html, trainer.model, x[:1], y[:1], TokenNames(tok), trainer.loss_fn,
                               trainer.optimizer, "--task lm", True, trainer.lr_at(trainer.optimizer.t))
        print(f"wrote {args.html}: one training step of the first window, {size / 1e6:.1f} MB", file=stream)
    if interactive and ckpt is None:
        walk_first_batch(trainer, tok, ask, stream)
    trainer.run_id = make_run_dir(out, ckpt, args.resume)
    config = run_config(s, "lm", args.device or "cpu", {})
    write_json(out / "config.json", with_run_id(config, trainer.run_id))
    summary = trainer.fit()
    sample, report = None, {}
    if (out / "best.npz").exists():
        best = load_checkpoint(out / "best.npz", optimizer=False).model
        prompt = "" if eos_id(tok) is not None else tok.decode([trainer.task["first_val_token"]])
        sample = prompt + generate_text(best, tok, prompt, 200, temperature=0.8, seed=s["seed"])
        if test is not None and not summary["interrupted"]:
            report = evaluate_test(best, test, s["test_data"], s["context"], stream)
    write_summary(summary, trainer, s, args, argv, out, "lm", sample=sample, **report)
    print_lm_summary(summary, out, stream)
    return run_exit(summary)


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


def run_exit(summary):
    """The exit code of a finished run: 2 when it diverged, 130 when Ctrl-C stopped it, else 0."""
    if summary.get("diverged"):                             # the Trainer said why; the files are kept
        print(f"error: {Diverged(**summary['diverged'])}", file=sys.stderr)
        return EXIT_USER_ERROR
    return EXIT_INTERRUPTED if summary["interrupted"] else 0


def print_lm_summary(summary, out, stream):
    """The results, the speed against the machine, why it stopped and where the files are."""
    if summary["best_val_loss"] is not None:
        print(wrap(f"best validation loss {summary['best_val_loss']:.4f} (perplexity "
                   f"{perplexity(summary['best_val_loss']):.2f}) after {summary['step']} steps, "
                   f"{summary['elapsed_s']:.1f} s"), file=stream)
    if summary.get("ms_per_iter") is not None:
        ratio = summary.get("flops_ratio")
        print(wrap(f"speed: {summary['ms_per_iter']:.1f} ms/iter, {summary['train_tokens_per_s']:,.0f} "
                   f"tokens/s, {si(summary['model_flops_per_s'], 'FLOP/s')}" + ("" if ratio is None else
                   f"\n  = {ratio:.1%} of the measured {si(summary['peak_flops_per_s'], 'FLOP/s')}")),
              file=stream)
    if summary.get("test_loss") is not None:
        print(wrap(format_test(summary)), file=stream)
    if summary["sample"] is not None:
        print("sample from best.npz (temperature 0.8):\n" + fold(summary["sample"]), file=stream)
    print(wrap(f"files in {out}:\n  {', '.join(summary['files'])}"), file=stream)
    if summary["stop_reason"] == "max_time":
        print(f"stopped after the --max-time budget, at step {summary['step']}", file=stream)
    if summary["stop_reason"] in ("interrupted", "max_time"):
        print(shell_wrap(f"continue with: python train_step_by_step.py --resume {out / 'last.npz'}"),
              file=stream)
    if (out / "best.npz").exists():                        # a run that diverged at once has none
        chat = " --chat" if summary["task"] == "qa" else ""    # qa: asked as it was taught
        print(shell_wrap(f"talk to it: python test_model_manually.py --checkpoint {out / 'best.npz'}{chat}"),
              file=stream)
