"""--task lm of train_step_by_step.py: a decoder LM on your text, trained, walked through, summarised.

  python train_step_by_step.py --config configs/shakespeare_char.json
  python -m glassformer.data fetch tinyshakespeare      # once: into the data cache
  python train_step_by_step.py --task lm --data tinyshakespeare \\
      --tokenizer char --preset tiny --context 64 --steps 2000
"""
import os
import sys
import textwrap
from pathlib import Path

from .. import backend, precision
from ..explain.page import write_step_page
from ..models.config import PRESETS
from ..runner.lm import build_trainer, first_window, lm_report, prepare_lm, write_summary
# what tests and other commands still reach through cli.lm (the run is runner/lm.py's)
from ..models.arithmetic import flops_per_token, lm_parameters, presets_table  # noqa: F401
from ..runner.lm import build_tokenizer, gpt2_dirs, gpt2_tokenizer, is_lm_checkpoint  # noqa: F401
from ..runner.lm_data import format_test, load_text, resolve_data  # noqa: F401
from ..train import agree, parallel, zero
from ..train.records import with_run_id, write_json
from ..train.step import Diverged
from ..train.progress import fold, shell_wrap, si, wrap
from ..train.config import flag_options
from ..train.trainer import perplexity
from .common import (CONTEXT, EXIT_INTERRUPTED, EXIT_USER_ERROR, FRACTION, Domain,
                     TokenNames, make_run_dir, matmul_rate, run_dir, unicode_ok)
from .config import run_config
from .walkthrough import walk


def training_flags(*names):
    """(flag, type, metavar, help) of TrainConfig's settings `names`, made from their fields."""
    return tuple(("--" + n.replace("_", "-"), *map(flag_options(n).get, ("type", "metavar", "help")))
                 for n in names)


# (flag, type, metavar, help) of the flags only --task lm reads; a number's type is its domain; the
# training settings' flags are made from TrainConfig's fields
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
    *training_flags("steps", "grad_accum", "min_lr", "warmup", "weight_decay", "beta1", "beta2",
                    "grad_clip", "eval_interval", "eval_batches", "log_interval", "sample_every"),
    ("--precision", None, None, "fp32 (default), tf32 (cuBLAS may round float32 matmul inputs to TF32 on a "
     "GPU) or fp16 (float16 matmuls, float32 master weights, dynamic loss scaling; on the CPU through "
     "NumPy float16, slow: for checking, not speed)"),
    *training_flags("max_time", "zero_stage"),
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
        if backend.current() != "cupy":
            print(wrap(parallel.describe_threads()), file=stream)
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
    summary = claim_and_fit(trainer, s, args, out, ckpt, "lm")
    report = lm_report(trainer, tok, test, s, out, summary, stream)   # best.npz's sample, test scores
    write_summary(summary, trainer, s, args, argv, out, "lm", **report)
    print_lm_summary(summary, out, stream)
    return run_exit(summary)


def claim_and_fit(trainer, s, args, out, ckpt, task):
    """Make and lock the run folder, write config.json, train: the Trainer's summary (lm and qa)."""
    trainer.run_id = make_run_dir(out, ckpt, args.resume)   # only now: Ctrl-C before leaves no folder
    config = run_config(s, task, args.device or "cpu", {})
    write_json(out / "config.json", with_run_id(config, trainer.run_id))
    return trainer.fit()


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
