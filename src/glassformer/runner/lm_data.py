"""--task lm's text: the train/validation/test files, their tokens, and the test perplexities at the end."""
import os
from pathlib import Path

from ..data import (VAL_FRACTION, build_tokens, load_corpus, open_source, read_blocks, require_known,
                    require_tokens, require_visible, split_files, window_minimum)
from ..data.fetch import resolve_dataset
from ..errors import UserError
from ..evaluate import evaluate_tokens
from ..inputs import stat_input
from ..generate import eos_id
from ..train.progress import wrap

DATA_KEYS = ("data", "val_data", "test_data")


def resolve_data(s):
    """s with absolute data paths; a data set's name stands for its files in the data cache, and a folder
    holding train/valid(/test) files for those files."""
    s = dict(s)
    for key in DATA_KEYS:
        s[key] = resolve_dataset(s[key], "--" + key.replace("_", "-"))
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
        stat_input(data, "text", allow_dir=True)            # a NUL in the path, a socket: refused too
    except UserError as e:
        hint = (f": training reads its data more than once, so save it first (cat {data} > data.txt) "
                "and pass --data data.txt") if os.path.exists(data) else ""
        raise UserError(f"{e}{hint}") from None


def check_text(data):
    """UserError for --data that is missing, not UTF-8, binary (NUL bytes in its first 64 KB), a pipe,
    empty or only whitespace."""
    refuse_special(data)
    source = open_source(data)
    for path in source.files():
        blocks = read_blocks(path, 1 << 16)
        try:
            head = next(blocks, "")
        finally:
            blocks.close()
        if "\x00" in head:
            raise UserError(f"{path}: looks like a binary file (it holds NUL bytes), not text: give "
                            "--data a UTF-8 .txt file or folder, WikiText, .jsonl or a Wikipedia .xml(.bz2)")
    require_visible(source)


def load_text(s, tok):
    """(corpus, test tokens or None): validation is --val-data when given, else the last 10% of --data."""
    eot = eos_id(tok)
    corpus = load_corpus(s["data"], tok, val_fraction=VAL_FRACTION, eot_id=eot, val_path=s["val_data"],
                         progress=True)
    test = None
    if s["test_data"] is not None:
        test, _ = build_tokens([open_source(s["test_data"])], tok, eot_id=eot, progress=True)
    return corpus, test


def require_splits(s, corpus, test, tok):
    """UserError unless every split holds context + 1 tokens, not all <unk> (data/minimum.py)."""
    need, cut = window_minimum(s["context"]), s["val_data"] is None
    splits = [(corpus.train, s["data"], f"the training split (the first {1 - VAL_FRACTION:.0%} of the "
               "tokens)" if cut else "the training split"),
              (corpus.val, s["val_data"] or s["data"], f"the validation split (the last {VAL_FRACTION:.0%} "
               "of the tokens)" if cut else "the validation split")]
    if test is not None:
        splits.append((test, s["test_data"], "the test split"))
    for tokens, where, what in splits:
        require_tokens(len(tokens), need, where, what, tok)
        require_known(tokens, tok, where, what)


def evaluate_test(model, tokens, path, context, stream):
    """Test loss and perplexity over all of the test text, windows every context/2 tokens (as
    glassformer.evaluate scores); WikiText's word-level perplexity too."""
    stride = max(1, context // 2)
    print(wrap(f"test: scoring the {len(tokens):,} tokens of {path} ..."), file=stream, flush=True)
    report = evaluate_tokens(model, tokens, context, stride, words_of=path)
    return {"test_data": str(path), "test_stride": stride, **{f"test_{k}": v for k, v in report.items()}}


def format_test(report):
    """The test results: loss and perplexity, then (WikiText) the word-level perplexity on its own line."""
    line = (f"test loss {report['test_loss']:.4f} (perplexity {report['test_ppl']:.2f}) over "
            f"{report['test_tokens']:,} tokens of {Path(report['test_data']).name}")
    if "test_word_ppl" in report:
        line += (f"\n  word-level perplexity {report['test_word_ppl']:.2f} "
                 f"({report['test_words']:,} words with one <eos> per line)")
    return line
