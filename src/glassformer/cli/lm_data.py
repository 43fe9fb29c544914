"""--task lm's text: the train/validation/test files, their tokens, and the test perplexities at the end."""
import math
import os
import stat
from pathlib import Path

import numpy as np

from ..backend import array_module
from ..data import build_tokens, count_words, detect_kind, load_corpus, open_source, read_blocks, split_files
from ..errors import UserError
from ..generate import eos_id
from ..layers.loss import CrossEntropyLoss
from ..train.trainer import perplexity

DATA_KEYS = ("data", "val_data", "test_data")


def resolve_data(s):
    """s with absolute data paths; a folder holding train/valid(/test) files stands for those files."""
    s = dict(s)
    splits = split_files(s["data"])
    if splits is not None:                                  # WikiText: its own splits, never a cut
        s["data"] = splits["train"]
        s["val_data"] = s["val_data"] or splits["valid"]
        s["test_data"] = s["test_data"] or splits["test"]
    for key in DATA_KEYS:
        if s[key] is not None:
            s[key] = str(Path(s[key]).resolve())
    return s


def refuse_special(data):
    """UserError for a named pipe, device or socket: training reads --data more than once (tokenizer,
    token cache), and a pipe can be read only once (reopening it would wait for a writer forever)."""
    try:
        mode = os.stat(data).st_mode
    except OSError:
        return                                              # missing: open_source says so clearly
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UserError(f"{data}: is a named pipe or device, not a file: training reads its data more "
                        f"than once, so save it first (cat {data} > data.txt) and pass --data data.txt")


def check_text(data):
    """UserError for --data that is missing, not UTF-8, binary (NUL bytes in its first 64 KB) or a pipe."""
    refuse_special(data)
    for path in open_source(data).files():
        blocks = read_blocks(path, 1 << 16)
        try:
            head = next(blocks, "")
        finally:
            blocks.close()
        if "\x00" in head:
            raise UserError(f"{path}: looks like a binary file (it holds NUL bytes), not text: give "
                            "--data a UTF-8 .txt file or folder, WikiText, .jsonl or a Wikipedia .xml(.bz2)")


def load_text(s, tok):
    """(corpus, test tokens or None): validation is --val-data when given, else the last 10% of --data."""
    eot = eos_id(tok)
    corpus = load_corpus(s["data"], tok, val_fraction=0.1, eot_id=eot, val_path=s["val_data"], progress=True)
    test = None
    if s["test_data"] is not None:
        test, _ = build_tokens([open_source(s["test_data"])], tok, eot_id=eot, progress=True)
    return corpus, test


def score_tokens(model, tokens, context, ignore=-1):
    """(total NLL in nats, targets scored): every token after the first, predicted once (a full test pass)."""
    tokens = np.asarray(tokens)
    n = len(tokens) - 1                                     # targets: tokens[1:]
    T = min(context, n)
    if T < 1:
        return 0.0, 0
    starts = np.arange(0, n - T + 1, T)                     # non-overlapping windows
    done = np.zeros(len(starts), np.int64)                  # targets at positions <= done are not counted
    if starts[-1] + T < n:                                  # the tail: a last window, its new targets only
        starts, done = np.append(starts, n - T), np.append(done, starts[-1] + T)
    xp = array_module(model.get_parameters()[0][0])
    loss_fn = CrossEntropyLoss(ignore_index=ignore)
    B = max(1, min(64, (1 << 22) // (T * model.config.vocab_size)))   # logits (B, T, V) within ~16 MB
    was_training, total = model.training, 0.0
    model.eval()
    try:
        for i in range(0, len(starts), B):
            pos = starts[i:i + B, None] + np.arange(T + 1)  # (b, T+1) token positions
            x, y = tokens[pos[:, :-1]].astype(np.int64), tokens[pos[:, 1:]].astype(np.int64)
            y[pos[:, 1:] <= done[i:i + B, None]] = ignore
            counted = int((y != ignore).sum())
            total += float(loss_fn.forward(model.forward(xp.asarray(x)), xp.asarray(y))) * counted
    finally:
        model.train(was_training)
    return total, n


def evaluate_test(model, tokens, path, context, stream):
    """Test loss and perplexity over all of the test text; WikiText's word-level perplexity too."""
    print(f"test: scoring the {len(tokens):,} tokens of {path} ...", file=stream, flush=True)
    nll, n = score_tokens(model, tokens, context)
    report = {"test_data": str(path), "test_tokens": n, "test_loss": nll / max(n, 1),
              "test_ppl": perplexity(nll / max(n, 1))}
    if detect_kind(path) == "wikitext":                     # words + one <eos> per line, as published
        words = count_words(path)
        report.update(test_words=words, test_word_ppl=math.exp(min(nll / words, 700.0)))
    return report


def format_test(report):
    """The test results as one line."""
    line = (f"test loss {report['test_loss']:.4f} (perplexity {report['test_ppl']:.2f}) over "
            f"{report['test_tokens']:,} tokens of {Path(report['test_data']).name}")
    if "test_word_ppl" in report:
        line += (f"; word-level perplexity {report['test_word_ppl']:.2f} "
                 f"({report['test_words']:,} words with one <eos> per line)")
    return line
