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
import math

import numpy as np

from .backend import array_module
from .checkpoint import load_checkpoint, needs_task
from .data import VAL_FRACTION, build_tokens, count_words, detect_kind, open_source, require_visible, split_tokens
from .data.io import is_pipe
from .errors import UserError
from .generate import eos_id
from .inputs import stat_input
from .layers.loss import CrossEntropyLoss
from .tokenizers import tokenizer_from_dict
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


# ---- what the command reads ---------------------------------------------------------------------

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


if __name__ == "__main__":             # python -m glassformer.evaluate: the command is in cli/
    from .cli.evaluate import main
    raise SystemExit(main())
