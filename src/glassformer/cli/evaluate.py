"""python -m glassformer.evaluate CHECKPOINT --data TEXT [--split val] [--json]: the command line of
glassformer.evaluate (held-out loss, perplexity and WikiText's word-level perplexity)."""
import argparse
import json
import time
from pathlib import Path

from .. import backend, evaluate
from ..data import MIN_SCORED_TOKENS, require_known, require_tokens, split_files
from ..data.fetch import resolve_dataset
from ..data.io import READ_LIMIT_ENV, is_stream
from ..domains import Domain
from ..errors import Parser, UserError, run_main
from ..evaluate import evaluate_tokens, load_lm, scored_part, text_tokens
from ..progress import Meter, wrap
from .common import CONTEXT, FRACTION                       # --context: at most the model's positions

MAX_TOKENS = Domain(int, 1, 2**40)


def build_parser():
    """The flags; the description is glassformer.evaluate's (how the windows score each token)."""
    p = Parser(prog="python -m glassformer.evaluate", description=evaluate.__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a language-model checkpoint (.npz), a run folder "
                   "(its best.npz) or a Hugging Face GPT-2 folder")
    p.add_argument("--data", type=Path, required=True, help="the text to score (.txt, WikiText, .jsonl, "
                   "a Wikipedia dump..., or a fetched data set's name: tinyshakespeare), tokenised with "
                   "the checkpoint's tokenizer")
    p.add_argument("--context", type=CONTEXT, help="tokens per window (default: the model's context)")
    p.add_argument("--stride", type=CONTEXT, help="tokens between window starts (default context/2; "
                   "= context: non-overlapping windows)")
    part = p.add_mutually_exclusive_group()
    part.add_argument("--split", choices=("all", "val"), default="all", help="all: the whole text "
                      "(default); val: the split --task lm validated on, the last 10%% of the tokens "
                      "(a WikiText folder: its valid file)")
    part.add_argument("--from-fraction", type=FRACTION, metavar="F", help="score the tokens from "
                      "fraction F of them on (0.9: the last 10%%, as --split val)")
    p.add_argument("--max-tokens", type=MAX_TOKENS, metavar="N", help="score only the first N targets, "
                   "reading no more of --data than they need (no word-level perplexity then: it needs the "
                   f"whole file). Any --data is read within a budget: 2 GB of text, ${READ_LIMIT_ENV} "
                   "(e.g. 8G, 0 for none) sets it, and a note says when it stops a read")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    p.add_argument("--reference", action="store_true",
                   help="run the plain reference layers, no CPU overlay "
                   "(as GLASSFORMER_REFERENCE=1; to compare)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    return p


def scored_tokens(args, tok):
    """(file, tokens to score, index of the first, tokens in the file, the file for word-level
    perplexity or None) of --data with --split / --from-fraction / --max-tokens."""
    data, split = args.data, args.split
    if split == "val" and split_files(data) is not None:    # WikiText: all of its valid file
        data, split = split_files(data)["valid"], "all"
    head = args.max_tokens + 1 if args.max_tokens and split != "val" and args.from_fraction is None else None
    tokens, first = scored_part(text_tokens(data, tok, head), split, args.from_fraction)
    n_text = first + len(tokens)
    whole = args.max_tokens is None or args.max_tokens > len(tokens) - 1 or \
        (head is None and args.max_tokens == len(tokens) - 1)      # a head read: more text may follow
    tokens = tokens if whole else tokens[:args.max_tokens + 1]
    require_tokens(len(tokens), MIN_SCORED_TOKENS, data, f"the part scored (from token {first:,} on)"
                   if first else "the text scored", tok)
    require_known(tokens, tok, data, "the text scored")
    return data, tokens, first, n_text, data if whole and first == 0 and not is_stream(data) else None


def command(argv=None):
    """Score --data with a checkpoint; print loss, perplexity (and word-level perplexity); exit 0."""
    args = build_parser().parse_args(argv)
    args.data = resolve_dataset(args.data)                  # tinyshakespeare: the data cache's copy
    backend.use(args.device)
    backend.set_overlay(backend.overlay_enabled() and not args.reference)
    model, tok = load_lm(args.checkpoint, args.device)
    max_len = model.config.max_len
    context = args.context or max_len
    if context > max_len:
        raise UserError(f"--context {context} is longer than the model's {max_len} positions")
    stride = args.stride or max(1, context // 2)
    if stride > context:
        raise UserError(f"--stride {stride} is above --context {context}: windows would skip tokens")
    data, tokens, first, n_text, words_of = scored_tokens(args, tok)
    start = time.perf_counter()
    meter = Meter("scored", total=len(tokens) - 1, unit=" tokens")     # on stderr
    report = evaluate_tokens(model, tokens, context, stride, words_of, lambda scored, n: meter.set(scored))
    meter.close()
    report = {"checkpoint": str(args.checkpoint), "data": str(data), "first_token": first,
              "text_tokens": n_text, "context": context, "stride": stride, **report,
              "seconds": round(time.perf_counter() - start, 3)}
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def format_report(r):
    """The figures as three or four lines, wrapped to the terminal."""
    part = f" from token {r['first_token']:,} of {r['text_tokens']:,}" if r["first_token"] else ""
    lines = [f"{r['checkpoint']} on {r['data']}{part}:\n  {r['tokens']:,} tokens scored, windows of "
             f"{r['context']} every {r['stride']} ({r['seconds']:.1f} s)",
             f"loss {r['loss']:.4f} nats/token, perplexity {r['ppl']:.3f}"]
    if "word_ppl" in r:
        lines.append(f"word-level perplexity {r['word_ppl']:.2f} over {r['words']:,} words (one <eos> "
                     "per line)")
    return wrap("\n".join(lines))


def main(argv=None):
    """Entry point: the command inside the error boundary (one `error:` line, exit 2)."""
    return run_main(command, argv)
