"""--task lm of train_step_by_step.py: a decoder LM on your text, trained, walked through, summarised.

  python train_step_by_step.py --task lm --data ../shared/data/tinyshakespeare/input.txt \\
      --tokenizer char --preset tiny --context 64 --steps 2000
"""
import shlex
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint, read_meta
from ..data import lm_batches, load_corpus, open_source, read_blocks
from ..errors import UserError
from ..generate import eos_id, generate_text
from ..layers.loss import CrossEntropyLoss
from ..models import build_model
from ..models.config import PRESETS, lm_config
from ..tokenizers import ByteLevelBPE, CharTokenizer, load_tokenizer, tokenizer_from_dict
from ..train.records import write_json
from ..train.trainer import TrainConfig, Trainer, perplexity
from .common import EXIT_INTERRUPTED, TokenNames, resolve_out, unicode_ok
from .walkthrough import walk

TOKENIZERS = ("char", "bpe", "gpt2")
GPT2_FILES = ("encoder.json", "vocab.bpe")
# where GPT-2's files are looked for: ./gpt2-tokenizer, then shared/data beside the repository
GPT2_DIRS = (Path("gpt2-tokenizer"),
             Path(__file__).resolve().parents[4] / "shared" / "data" / "gpt2-tokenizer")
# a --task lm flag left out takes this value (not models.config.LM_DEFAULTS, the model's settings)
FLAG_DEFAULTS = {"preset": "tiny", "tokenizer": "char", "context": None, "batch_size": 16,
                 "steps": 1000, "lr": 1e-3, "warmup": 100, "eval_interval": 100, "dropout": 0.0,
                 "bpe_vocab": 1024, "seed": 0}
WALK_TOKENS = 12                                            # tokens of the first batch walked through


def add_lm_arguments(parser):
    """The flags only --task lm reads (the shared ones: --batch-size, --lr, --seed, --out, --resume)."""
    g = parser.add_argument_group(
        "--task lm", "a decoder LM (GPT-2 style) trained with AdamW, warm-up + cosine and clipping; "
        "--batch-size counts windows of --context tokens (default 16), --lr is the peak (1e-3)")
    g.add_argument("--data", type=Path, help="text to train on: a .txt file or folder, WikiText, a "
                   "Wikipedia .xml(.bz2) dump, .jsonl, TinyStories; the last 10%% is validation")
    g.add_argument("--tokenizer", help="char (default), bpe (trained on --data, --bpe-vocab tokens), "
                   "gpt2 (GPT-2's 50,257 tokens) or a tokenizer .json saved by glassformer")
    g.add_argument("--bpe-vocab", type=int, help="vocabulary size of --tokenizer bpe (default 1024)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="model size (default tiny: 4 layers, "
                   "d_model 128)")
    g.add_argument("--context", type=int, help="tokens per training window (default: the preset's)")
    g.add_argument("--steps", type=int, help="optimizer updates (default 1000; with --resume, the "
                   "total to reach)")
    g.add_argument("--warmup", type=int, help="linear warm-up steps before the cosine (default 100)")
    g.add_argument("--eval-interval", type=int, help="steps between validation passes (default 100)")
    g.add_argument("--dropout", type=float, help="dropout probability (default 0)")


# ---- tokenizers ----------------------------------------------------------------------------

def gpt2_tokenizer():
    """GPT-2's tokenizer from encoder.json + vocab.bpe, looked for in GPT2_DIRS."""
    for d in GPT2_DIRS:
        if all((d / f).exists() for f in GPT2_FILES):
            return ByteLevelBPE.from_gpt2(d / GPT2_FILES[0], d / GPT2_FILES[1])
    raise UserError("--tokenizer gpt2: GPT-2's encoder.json and vocab.bpe were not found in "
                    f"{' or '.join(str(d) for d in GPT2_DIRS)}; copy them to ./gpt2-tokenizer/")


def build_tokenizer(kind, data, bpe_vocab, stream):
    """A tokenizer for the text at `data`: its characters, BPE trained on it, GPT-2's, or a file."""
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind not in TOKENIZERS:
        if not Path(kind).is_file():
            raise UserError(f"--tokenizer {kind}: use char, bpe, gpt2 or the path of a tokenizer .json")
        return load_tokenizer(kind)
    documents = open_source(data)
    if kind == "char":
        chars = set()
        for doc in documents:
            chars.update(doc)
        if not chars:
            raise UserError(f"{data}: no text found to build a character vocabulary from")
        return CharTokenizer(sorted(chars))
    print(f"training a byte-level BPE of {bpe_vocab} tokens on {data} ...", file=stream, flush=True)
    return ByteLevelBPE.train("\n".join(documents), bpe_vocab, progress=True)   # meter on stderr


# ---- settings: from flags, or from the checkpoint on --resume ----------------------------------

def is_lm_checkpoint(path):
    """True when path is a checkpoint written by --task lm (read from its header only)."""
    if path is None:
        return False
    meta, _ = read_meta(path)
    return isinstance(meta.get("task"), dict) and meta["task"].get("name") == "lm"


def resolve_lm_settings(args):
    """(settings dict, checkpoint or None); flags that contradict a resumed run are UserErrors."""
    if args.epochs is not None:
        raise UserError("--epochs is for digits and sentences: --task lm counts --steps")
    if args.resume is None:
        s = {k: (getattr(args, k, None) if getattr(args, k, None) is not None else d)
             for k, d in FLAG_DEFAULTS.items()}
        if args.data is None:
            raise UserError("--task lm needs --data PATH, e.g. "
                            "--data ../shared/data/tinyshakespeare/input.txt")
        s["data"] = str(args.data)
        s["context"] = s["context"] or PRESETS[s["preset"]]["max_len"]
        for name in ("context", "steps", "batch_size", "bpe_vocab"):
            if s[name] < 1:
                raise UserError(f"--{name.replace('_', '-')} {s[name]} must be at least 1")
        return s, None
    ckpt = load_checkpoint(args.resume)
    task = ckpt.task if isinstance(ckpt.task, dict) else {}
    saved = task.get("settings")
    if task.get("name") != "lm" or not saved or not ckpt.optimizer_state:
        raise UserError(f"{args.resume}: not a resumable --task lm checkpoint (no run settings or "
                        "optimizer state); start a new run instead")
    for key in ("preset", "tokenizer", "context", "batch_size", "lr", "seed", "dropout", "warmup"):
        given = getattr(args, key, None)
        if given is not None and given != saved[key]:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {given} differs from the resumed run's {saved[key]}: drop {flag}")
    s = dict(saved, data=str(args.data) if args.data else saved["data"])
    s["steps"] = args.steps or saved["steps"]
    if s["steps"] <= ckpt.step:
        raise UserError(f"{args.resume} is already at step {ckpt.step}: pass --steps N with N > "
                        f"{ckpt.step} to train more")
    s["eval_interval"] = args.eval_interval or saved["eval_interval"]
    return s, ckpt


# ---- the run ----------------------------------------------------------------------------------

def check_text(data):
    """UserError for --data that is missing, not UTF-8, or binary (NUL bytes in its first 64 KB)."""
    for path in open_source(data).files():
        blocks = read_blocks(path, 1 << 16)
        try:
            head = next(blocks, "")
        finally:
            blocks.close()
        if "\x00" in head:
            raise UserError(f"{path}: looks like a binary file (it holds NUL bytes), not text: give "
                            "--data a UTF-8 .txt file or folder, WikiText, .jsonl or a Wikipedia .xml(.bz2)")


def build_trainer(s, out, stream, ckpt=None):
    """(trainer, tokenizer, corpus) for settings s; from the checkpoint's model and tokenizer on resume."""
    tok = tokenizer_from_dict(ckpt.tokenizer) if ckpt else \
        build_tokenizer(s["tokenizer"], s["data"], s["bpe_vocab"], stream)
    corpus = load_corpus(s["data"], tok, val_fraction=0.1, eot_id=eos_id(tok), progress=True)
    if ckpt is None:
        config = lm_config(s["preset"], tok.vocab_size, max_len=s["context"], dropout=s["dropout"])
        model = build_model(config, np.random.default_rng(s["seed"]))
    else:
        model = ckpt.model
    T, B = s["context"], s["batch_size"]
    tcfg = TrainConfig(steps=s["steps"], lr=s["lr"], min_lr=s["lr"] / 10,
                       warmup_steps=min(s["warmup"], s["steps"] // 2), eval_interval=s["eval_interval"],
                       eval_batches=20, log_interval=max(1, min(50, s["steps"] // 20)),
                       checkpoint_interval=s["eval_interval"], out_dir=str(out), seed=s["seed"])
    task = {"name": "lm", "settings": s, "context": T, "n_train_tokens": len(corpus.train),
            "n_val_tokens": len(corpus.val)}
    trainer = Trainer(model, CrossEntropyLoss(), lm_batches(corpus.train, B, T), tcfg,
                      val_batches=lm_batches(corpus.val, B, T), tokenizer=tok, task=task, log=stream)
    if ckpt is not None:
        trainer.resume(ckpt)
    return trainer, tok, corpus


def walk_first_batch(trainer, tok, ask, stream):
    """The stage-by-stage walk of train_step_by_step.py on the first row of the first batch."""
    peek = np.random.default_rng()
    peek.bit_generator.state = trainer.rng.bit_generator.state   # the batch step 1 will draw
    x, y = trainer.batches(peek)
    n = min(WALK_TOKENS, x.shape[1])
    print(f"walking through the first {n} tokens of the first training window "
          f"({x.shape[0]} x {x.shape[1]} tokens per batch)", file=stream)
    return walk(trainer.model, x[:1, :n], y[:1, :n], TokenNames(tok, unicode_ok(stream)),
                trainer.loss_fn, trainer.optimizer, ask, stream)


def run_lm(args, argv, stream, interactive, ask=input):
    """Train a language model from the flags (walk the first batch when interactive); exit code."""
    s, ckpt = resolve_lm_settings(args)
    check_text(s["data"])                                   # before the run directory is made
    out = resolve_out(args, "lm")
    trainer, tok, corpus = build_trainer(s, out, stream, ckpt)
    model = trainer.model
    print(f"task lm: {s['data']}, {trainer.task['n_train_tokens']:,} training and "
          f"{trainer.task['n_val_tokens']:,} validation tokens; {tok.type} tokenizer of "
          f"{tok.vocab_size:,} tokens; {s['preset']} preset, {model.n_parameters():,} parameters, "
          f"context {s['context']}; run directory {out}"
          + (f"; resuming after step {trainer.step}" if ckpt else ""), file=stream)
    if interactive and ckpt is None:
        walk_first_batch(trainer, tok, ask, stream)
    summary = trainer.fit()
    sample = None
    if (out / "best.npz").exists():                         # from nothing, or from the first val token
        prompt = "" if eos_id(tok) is not None else tok.decode([int(corpus.val[0])])
        best = load_checkpoint(out / "best.npz").model
        sample = prompt + generate_text(best, tok, prompt, 200, temperature=0.8, seed=s["seed"])
    summary.update(task="lm", command="python train_step_by_step.py " + shlex.join(argv),
                   date=datetime.now().isoformat(timespec="seconds"), sample=sample,
                   resumed_from=str(args.resume) if args.resume else None,
                   config={"model": model.config.to_dict(), "settings": s,
                           "training": asdict(trainer.config)},
                   files=sorted({p.name for p in out.iterdir()
                                 if p.suffix in (".npz", ".csv", ".png")} | {"summary.json"}))
    write_json(out / "summary.json", summary)
    print_lm_summary(summary, out, stream)
    return EXIT_INTERRUPTED if summary["interrupted"] else 0


def print_lm_summary(summary, out, stream):
    if summary["best_val_loss"] is not None:
        print(f"best validation loss {summary['best_val_loss']:.4f} (perplexity "
              f"{perplexity(summary['best_val_loss']):.2f}) after {summary['step']} steps, "
              f"{summary['elapsed_s']:.1f} s", file=stream)
    if summary["sample"] is not None:
        print("sample from best.npz (temperature 0.8):\n" + summary["sample"], file=stream)
    print(f"files in {out}: {', '.join(summary['files'])}", file=stream)
    if summary["interrupted"]:
        print(f"continue with: python train_step_by_step.py --resume {out / 'last.npz'}", file=stream)
    print(f"talk to it: python test_model_manually.py --checkpoint {out / 'best.npz'}", file=stream)
