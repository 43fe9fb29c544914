"""Generation: choosing the next token (greedy, temperature, top-k, top-p), and text in, text out."""
import numpy as np

from .backend import array_module, to_numpy
from .errors import UserError


def sample_next(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """One token id from a (V,) vector of logits; greedy (argmax) when temperature is 0."""
    z = to_numpy(logits).astype(np.float64)
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


def validate_sampling(temperature, top_k, top_p):
    """Raise ValueError for settings that cannot be sampled with."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k} must be a positive integer")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")


def generate_tokens(model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                    eos_id=None, use_cache=True, rng=None):
    """Continue the prompt `ids` (a list of ints) with a DecoderLM; returns only the new ids.

    temperature 0 is greedy; with use_cache each step feeds one token and reuses the cached keys
    and values (the same result as recomputing the whole context).
    """
    validate_sampling(temperature, top_k, top_p)
    if len(ids) == 0:
        raise ValueError("generate needs a prompt of at least one token")
    rng = rng if rng is not None else np.random.default_rng(seed)
    xp = array_module(model.tok_emb.W)
    was_training = model.training
    model.eval()
    context, new = list(ids), []
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
            h = model.features(xp.asarray([step_ids]), caches, start)      # (1, t, C)
            logits = model.logits(h[:, -1:])                              # (1, 1, V): last only
            nxt = sample_next(logits[0, -1], rng, temperature, top_k, top_p)
            new.append(nxt)
            context.append(nxt)
            if eos_id is not None and nxt == eos_id:
                break
    finally:
        model.train(was_training)
    return new


EOS_NAMES = ("<|endoftext|>", "<eos>", "</s>")


def eos_id(tokenizer):
    """The id of the tokenizer's end-of-text special token, or None when it has none."""
    specials = getattr(tokenizer, "specials", None) or ()
    for name in EOS_NAMES:
        if name in specials:                                # a list (char, word) or a dict (bpe)
            return tokenizer.token_id(name)
    return None


def generate_text(model, tokenizer, prompt, max_new_tokens=200, temperature=0.8, top_k=None,
                  top_p=None, seed=None, stop_at_eos=True, use_cache=True):
    """The model's continuation of `prompt` (a str) as text, without the prompt itself."""
    ids = tokenizer.encode(prompt)
    eos = eos_id(tokenizer)
    if not ids:
        if eos is None:
            raise UserError("the prompt is empty and the tokenizer has no end-of-text token to start "
                            "from: type at least one character")
        ids = [eos]                                         # GPT-2's way to start from nothing
    new = generate_tokens(model, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, seed=seed, eos_id=eos if stop_at_eos else None, use_cache=use_cache)
    if stop_at_eos and new and eos is not None and new[-1] == eos:
        new = new[:-1]
    return tokenizer.decode(new)
