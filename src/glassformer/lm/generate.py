"""Text in, text out: encode a prompt, sample from a DecoderLM, decode the continuation."""
from ..errors import UserError

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
    new = model.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         seed=seed, eos_id=eos if stop_at_eos else None, use_cache=use_cache)
    if stop_at_eos and new and eos is not None and new[-1] == eos:
        new = new[:-1]
    return tokenizer.decode(new)
