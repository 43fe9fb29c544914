"""The minimum data a task needs, defined once: visible text, and context + 1 tokens in every split.

Training (--task lm, qa's --mix-data) cuts windows of `context` tokens, each with the token after
it as its last target, so every split (train, validation, test) must hold at least context + 1
tokens after tokenising. Scoring a text (glassformer.evaluate) needs one target: 2 tokens, the
windows shrinking to the text. Text that is empty or holds only whitespace is refused whatever
the tokenizer: its tokens would teach (or score) nothing but spaces and line breaks; so is text
the tokenizer knows none of (every token its <unk>).
"""
from contextlib import closing

import numpy as np

from ..errors import UserError
from .io import is_stream

CHUNK_TOKENS = 1 << 22                  # ids compared at a time by require_known
MIN_SCORED_TOKENS = 2                   # a text scored by evaluate: one token, and one predicted from it


def window_minimum(context):
    """Tokens a training split needs: one window of `context` tokens and the token after it."""
    return context + 1


def require_visible(source):
    """UserError naming the file when a source is empty or holds only whitespace; reads only up to
    its first visible character (one block of a normal file). A pipe is left unread (read once)."""
    if source.stream is not None or any(is_stream(path) for path in source.files()):
        return
    chars = 0
    with closing(iter(source)) as docs:                  # stops early: the file is closed now
        for doc in docs:
            if doc and not doc.isspace():
                return
            chars += len(doc)
    what = "is empty" if chars == 0 else f"holds only whitespace ({chars:,} characters)"
    raise UserError(f"{source.path}: {what}: there is no text to learn from or score; give a file "
                    "with words in it")


def require_tokens(n_tokens, need, where, what, tokenizer=None):
    """UserError naming the text, its token count and the minimum when a split holds fewer than
    `need` tokens (window_minimum(context) to train, MIN_SCORED_TOKENS to score)."""
    if n_tokens >= need:
        return
    kind = f" with the {tokenizer.type} tokenizer" if getattr(tokenizer, "type", None) else ""
    why = "nothing to score: a token is scored from those before it" if need == MIN_SCORED_TOKENS else \
        f"context + 1: one window of {need - 1:,} tokens and the token after it; give more text or a " \
        "smaller --context"
    raise UserError(f"{where}: {what} holds {n_tokens:,} token{'s' * (n_tokens != 1)} after tokenising"
                    f"{kind}, fewer than the minimum of {need:,} ({why})")


def require_known(tokens, tokenizer, where, what):
    """UserError when every token is the tokenizer's unknown token: its vocabulary holds nothing of
    the text, so a model would learn (or be scored on) one symbol. Read in chunks: bounded memory."""
    unk = getattr(tokenizer, "unk_id", None)
    if unk is None or len(tokens) == 0:
        return
    for start in range(0, len(tokens), CHUNK_TOKENS):
        if (np.asarray(tokens[start:start + CHUNK_TOKENS]) != unk).any():
            return
    raise UserError(f"{where}: {what} is only unknown tokens ({len(tokens):,} x {tokenizer.unk!r}): the "
                    "tokenizer knows none of it; give text in its vocabulary, or build a tokenizer from "
                    "this text")
