"""Held-out scores as papers report them: token loss and perplexity over a
sliding window, and WikiText's word-level perplexity.

  python -m glassformer.evaluate checkpoints/shakespeare_char.npz \\
      --data tinyshakespeare --split val [--json]
--split val scores the split --task lm validated on: the last 10% of the
tokens (a WikiText folder: its valid file); --from-fraction F scores the
tokens from that fraction of them on (0.9: the same last 10%).
Windows of T = context tokens start every `stride` tokens (default T/2). Each
window scores only the targets no earlier window scored (the first scores all
of its own) and a last window ends at the text's end, so every token after the
first is scored once, with up to T tokens before it (at least T - stride + 1
once past the first window). Word-level perplexity is exp(total NLL / words),
the words counted with one <eos> per line, as WikiText's published figures are.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import backend
from .backend import array_module
from .checkpoint import load_checkpoint, needs_task
from .data import (MIN_SCORED_TOKENS, VAL_FRACTION, build_tokens, count_words, detect_kind, open_source,
                   require_known, require_tokens, require_visible, split_files, split_tokens)
from .data.io import READ_LIMIT_ENV, is_pipe, is_stream
from .data.fetch import resolve_dataset
from .domains import Domain
from .errors import Parser, UserError, main_boundary
from .generate import eos_id
from .inputs import stat_input
from .layers.loss import CrossEntropyLoss
from .tokenizers import tokenizer_from_dict
from .train.progress import terminal_width, wrap
from .train.trainer import perplexity

LOGIT_FLOATS = 1 << 22                                      # a batch's logits (B, T, V): ~16 MB of float32


def sliding_windows(n, context, stride=None):
    """(starts, done) int64 arrays for targets 1..n: window i reads tokens starts[i] .. starts[i]+T-1
    (T = min(context, n)) and scores its targets at positions above done[i]; stride None: T."""
    T = min(context, n)
    stride = T if stride is None else min(stride, T)
    if T < 1 or stride < 1:
        raise UserError(f"sliding windows need a context and a stride of at least 1 and a target, not "
                        f"context {context}, stride {stride}, {n} targets")
    starts = np.arange(0, n - T + 1, stride, dtype=np.int64)
    if starts[-1] + T < n:                                  # the tail: a last window ending at the end
        starts = np.append(starts, n - T)
    done = np.concatenate([[0], starts[:-1] + T]).astype(np.int64)   # what the window before scored
    return starts, done


def score_tokens(model, tokens, context, stride=None, ignore=-1, progress=None):
    """(total NLL in nats, targets scored): every token after the first predicted once, through
    sliding_windows (stride None: non-overlapping); progress(scored, n) after each batch."""
    tokens = np.asarray(tokens)
    n = len(tokens) - 1                                     # targets: tokens[1:]
    if n < 1:
        return 0.0, 0
    T = min(context, n)
    starts, done = sliding_windows(n, context, stride)
    xp = array_module(model.get_parameters()[0][0])
    loss_fn = CrossEntropyLoss(ignore_index=ignore)
    B = max(1, min(64, LOGIT_FLOATS // (T * model.config.vocab_size)))
    was_training, total, scored = model.training, 0.0, 0
    model.eval()
    try:
        for i in range(0, len(starts), B):
            pos = starts[i:i + B, None] + np.arange(T + 1)  # (b, T+1) token positions
            x, y = tokens[pos[:, :-1]].astype(np.int64), tokens[pos[:, 1:]].astype(np.int64)
            y[pos[:, 1:] <= done[i:i + B, None]] = ignore   # scored by an earlier window
            counted = int((y != ignore).sum())
            total += float(loss_fn.forward(model.forward(xp.asarray(x)), xp.asarray(y))) * counted
            scored += counted
            if progress is not None:
                progress(scored, n)
    finally:
        model.train(was_training)
    return total, scored


def evaluate_tokens(model, tokens, context, stride=None, words_of=None, progress=None):
    """{"tokens", "loss", "ppl"} of the text's tokens; with words_of (a WikiText file, the whole of
    it scored) also {"words", "word_ppl"}: exp(total NLL / its words with one <eos> per line)."""
    nll, n = score_tokens(model, tokens, context, stride, progress=progress)
    report = {"tokens": n, "loss": nll / max(n, 1), "ppl": perplexity(nll / max(n, 1))}
    if words_of is not None and detect_kind(words_of) == "wikitext":
        words = count_words(words_of)
        report.update(words=words, word_ppl=math.exp(min(nll / words, 700.0)))
    return report


# ---- the command line ------------------------------------------------------------------------

class Meter:
    """Progress of a scoring pass on stderr: redrawn in place on a terminal, a line each 10% otherwise."""

    def __init__(self, stream):
        self.stream, self.start, self.shown, self.drawn = stream, time.perf_counter(), 0, 0.0
        self.live = stream.isatty()

    def __call__(self, scored, n):
        seconds = time.perf_counter() - self.start
        tenth = 10 * scored // n
        if scored < n and (tenth == self.shown if not self.live else seconds - self.drawn < 0.25):
            return
        self.shown, self.drawn = tenth, seconds
        eta = seconds * (n - scored) / max(scored, 1)
        line = f"scored {scored:,}/{n:,} tokens ({scored / n:.0%}), {seconds:.0f} s, ETA {eta:.0f} s"
        end = "\n" if not self.live else "\n" if scored == n else ""
        line = "\r" + line[:terminal_width() - 1] if self.live else line   # a wrapped \r line garbles
        print(line, end=end, file=self.stream, flush=True)


CONTEXT = Domain(int, 1, 2**20)                             # and at most the model's positions
MAX_TOKENS = Domain(int, 1, 2**40)
FROM_FRACTION = Domain(float, 0.0, 1.0, high_open=True)     # where the scored tokens start


def build_parser():
    p = Parser(prog="python -m glassformer.evaluate", description=__doc__,
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
    part.add_argument("--from-fraction", type=FROM_FRACTION, metavar="F", help="score the tokens from "
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


def load_lm(path, device):
    """(model, tokenizer) of a language-model checkpoint; UserError for any other."""
    with needs_task("lm"):
        ckpt = load_checkpoint(path, device=device, optimizer=False)
    if getattr(ckpt.config, "kind", None) != "decoder_lm":
        kind = getattr(ckpt.config, "kind", type(ckpt.model).__name__)
        raise UserError(f"{path}: its model is of kind {kind!r}, not a language model (decoder_lm): "
                        "evaluate scores next-token prediction")
    if not ckpt.tokenizer:
        raise UserError(f"{path}: the checkpoint holds no tokenizer to turn --data into tokens")
    return ckpt.model, tokenizer_from_dict(ckpt.tokenizer)


def scored_part(tokens, split, start=None):
    """(the tokens to score, the index of the first): all of them, the last VAL_FRACTION (--split val:
    split_tokens, the very cut training made) or those from fraction `start` on."""
    if start is None and split != "val":
        return tokens, 0
    val_fraction = VAL_FRACTION if start is None else round(1 - start, 12)   # 1 - 0.9: exactly 0.1
    train, val = split_tokens(tokens, val_fraction)
    return val, len(train)


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


def text_tokens(path, tok, max_tokens=None):
    """The token ids of the file (a pipe such as /dev/stdin: read once), documents joined by the
    end-of-text token (when the tokenizer has one); max_tokens: the first that many, and no more read."""
    stat_input(path, "text", allow_dir=True, allow_stream=is_pipe(path))   # a named FIFO, a socket: refused
    try:
        source = open_source(path)
        require_visible(source)                             # empty or whitespace: nothing to score
        tokens, _ = build_tokens([source], tok, eot_id=eos_id(tok), progress=True, max_tokens=max_tokens)
    except UserError as e:
        message = str(e)
        raise UserError(message if str(path) in message else f"{path}: {message}") from None
    return tokens


@main_boundary
def main(argv=None):
    """Score --data with a checkpoint; print loss, perplexity (and word-level perplexity); exit 0/2."""
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
    report = evaluate_tokens(model, tokens, context, stride, words_of, Meter(sys.stderr))
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


if __name__ == "__main__":
    raise SystemExit(main())
