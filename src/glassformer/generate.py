"""Generation: choosing the next token (greedy, temperature, top-k, top-p), and text in, text out."""
import codecs

import numpy as np

from .backend import array_module, to_numpy
from .domains import SEED, Domain
from .errors import UserError
from .models.decoder import decode_step

# The sampling contract: test_model_manually.py's flags, its REPL's `set` and this module's functions
# all check these (top_k and top_p: None is off). A temperature below 1e-4 divides logits into
# overflow (NaN probabilities); 0 is exactly greedy instead.
TEMPERATURE = Domain(float, 1e-4, 100.0, also=(0.0,), meaning="0 = greedy")
TOP_K = Domain(int, 1, 2**31 - 1)
TOP_P = Domain(float, 0.0, 1.0, low_open=True)
MAX_NEW_TOKENS = Domain(int, 1, 100_000)
NUM_SAMPLES = Domain(int, 1, 10_000)


def sample_next(logits, rng, temperature=1.0, top_k=None, top_p=None, banned=None):
    """One token id from a (V,) vector of logits; greedy (argmax) when temperature is 0.

    banned: ids never chosen (their logits are set to -inf first), e.g. padding and start tokens.
    """
    z = to_numpy(logits).astype(np.float64)
    if banned is not None and len(banned):
        z[np.asarray(banned, dtype=np.int64)] = -np.inf
    if temperature == 0:
        return int(z.argmax())
    z = z / temperature
    if top_k is not None and 0 < top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)                    # keep the k largest
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and 0.0 < top_p < 1.0:
        order = np.argsort(-p)
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]  # smallest set with mass >= top_p
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(p.size, p=p))


def validate_sampling(temperature, top_k, top_p, max_new_tokens=None, seed=None):
    """The settings as checked numbers; DomainError (a ValueError and a UserError) for any outside its domain."""
    return (TEMPERATURE.check(temperature, "temperature"),
            None if top_k is None else TOP_K.check(top_k, "top_k"),
            None if top_p is None else TOP_P.check(top_p, "top_p"),
            None if max_new_tokens is None else MAX_NEW_TOKENS.check(max_new_tokens, "max_new_tokens"),
            None if seed is None else SEED.check(seed, "seed"))


def stream_tokens(model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                  eos_id=None, use_cache=True, rng=None, banned=None, vocab_size=None):
    """Continue the prompt `ids` (a list of ints) with a DecoderLM, yielding each new id as it is chosen.

    temperature 0 is greedy; with use_cache each step feeds one token and reuses the cached keys
    and values (the same result as recomputing the whole context). Settings are checked now, not at
    the first next(); closing the generator early (or Ctrl-C) restores the model's training mode.
    vocab_size: the tokenizer's; ids at or above it are never chosen (an embedding padded beyond its
    tokenizer, as nanoGPT's 50,304-row GPT-2 for 50,257 tokens, has rows no text decodes to).
    """
    temperature, top_k, top_p, _, seed = validate_sampling(temperature, top_k, top_p, seed=seed)
    max_new_tokens = 0 if max_new_tokens == 0 else MAX_NEW_TOKENS.check(max_new_tokens, "max_new_tokens")
    if len(ids) == 0:
        raise ValueError("generate needs a prompt of at least one token")
    rng = rng if rng is not None else np.random.default_rng(seed)
    rows = model.tok_emb.W.shape[0]                           # the embedding's rows: V
    if vocab_size is not None and not 1 <= vocab_size <= rows:
        raise UserError(f"the tokenizer has {vocab_size:,} tokens but the model {rows:,} embedding rows: "
                        "they do not belong together")
    return _decode(model, list(ids), max_new_tokens, (temperature, top_k, top_p), eos_id, use_cache,
                   rng, banned, vocab_size or rows)


def _decode(model, context, max_new_tokens, sampling, eos_id, use_cache, rng, banned, vocab_size):
    """The one decoding loop behind stream_tokens and generate_tokens; ids >= vocab_size masked."""
    xp = array_module(model.tok_emb.W)
    was_training = model.training
    model.in_memory().eval()                                # a mapped GPT-2 folder: copied once, here
    max_len = model.config.max_len
    caches, start = None, 0
    try:
        for _ in range(max_new_tokens):
            if use_cache and caches is not None and len(context) <= max_len:
                step_ids, start = context[-1:], len(context) - 1        # only the new token
            else:                                                      # (re)fill the cache
                window = context[-max_len:]
                step_ids, start = window, 0
                caches = model.new_caches() if use_cache else None
            logits = decode_step(model, xp.asarray([step_ids]), caches, start)   # (1, 1, V): last only
            nxt = sample_next(logits[0, -1, :vocab_size], rng, *sampling, banned=banned)   # (V',)
            context.append(nxt)
            yield nxt
            if eos_id is not None and nxt == eos_id:
                break
    finally:
        model.train(was_training)


def generate_tokens(model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                    eos_id=None, use_cache=True, rng=None, banned=None, vocab_size=None):
    """The new ids of stream_tokens(...) as a list (the prompt not included)."""
    return list(stream_tokens(model, ids, max_new_tokens, temperature, top_k, top_p, seed, eos_id,
                              use_cache, rng, banned, vocab_size))


EOS_NAMES = ("<|endoftext|>", "<eos>", "</s>")


def eos_id(tokenizer):
    """The id of the tokenizer's end-of-text special token, or None when it has none."""
    specials = getattr(tokenizer, "specials", None) or ()
    for name in EOS_NAMES:
        if name in specials:                                # a list (char, word) or a dict (bpe)
            return tokenizer.token_id(name)
    return None


def special_ids(tokenizer, keep=None):
    """Ids of the tokenizer's special tokens except `keep` (the end of text): never output words."""
    specials = getattr(tokenizer, "specials", None) or ()
    ids = specials.values() if isinstance(specials, dict) else [tokenizer.token_id(s) for s in specials]
    return sorted(int(i) for i in ids if i != keep)


class TextStream:
    """Text of a growing list of ids, one piece per id; a multi-byte character comes out only whole.

    The pieces joined equal tokenizer.decode(ids): byte-level BPE bytes go through an incremental
    UTF-8 decoder; vocabulary tokenizers put their separator (a space for words) between tokens.
    """

    def __init__(self, tokenizer):
        self.tokenizer, self.first = tokenizer, True
        self.bytes_of = getattr(tokenizer, "token_bytes", None)
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, i):
        """The text that token id `i` completes ("" while a character is still cut)."""
        if self.bytes_of is not None:
            return self.utf8.decode(self.bytes_of(int(i)))
        sep = "" if self.first else getattr(self.tokenizer, "sep", "")
        self.first = False
        return sep + self.tokenizer.decode([int(i)])

    def flush(self):
        """What is left at the end: a cut character shows as U+FFFD, as decode() shows it."""
        return self.utf8.decode(b"", final=True) if self.bytes_of is not None else ""


def generate_text(model, tokenizer, prompt, max_new_tokens=200, temperature=0.8, top_k=None,
                  top_p=None, seed=None, stop_at_eos=True, use_cache=True):
    """The model's continuation of `prompt` (a str) as text, without the prompt itself.

    Special tokens other than the end of text are never sampled (they are not words).
    """
    ids = tokenizer.encode(prompt)
    eos = eos_id(tokenizer)
    if not ids:
        if eos is None:
            raise UserError("the prompt is empty and the tokenizer has no end-of-text token to start "
                            "from: type at least one character")
        ids = [eos]                                         # GPT-2's way to start from nothing
    new = generate_tokens(model, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, seed=seed, eos_id=eos if stop_at_eos else None, use_cache=use_cache,
                          banned=special_ids(tokenizer, keep=eos), vocab_size=tokenizer.vocab_size)
    if stop_at_eos and new and eos is not None and new[-1] == eos:
        new = new[:-1]
    return tokenizer.decode(new)
