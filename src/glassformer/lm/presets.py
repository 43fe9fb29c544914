"""Decoder-LM presets by name, and the random-window batches an LM trains on."""
from dataclasses import fields

from ..errors import UserError
from ..models.config import LM_DEFAULTS, PRESETS, ModelConfig


def lm_config(preset, vocab_size, **overrides):
    """ModelConfig of a named preset (tiny, small, medium, large, qa) with any field overridden.

    d_ff follows 4 * d_model unless it is given; e.g. lm_config("tiny", 65, max_len=64, dropout=0.1).
    """
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}: use one of {sorted(PRESETS)}")
    known = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown model setting(s) {unknown}: use some of {sorted(known)}")
    settings = dict(LM_DEFAULTS, **PRESETS[preset])
    settings.update(overrides)
    settings.setdefault("d_ff", 4 * settings["d_model"])
    return ModelConfig(vocab_size=vocab_size, **settings)


def lm_batches(tokens, batch_size, context):
    """A batches(rng) -> (x, y) function: batch_size random windows of context tokens, y = x shifted."""
    from ..data import random_windows
    if len(tokens) < context + 1:
        raise UserError(f"a split of {len(tokens)} tokens is shorter than context+1 = {context + 1}: "
                        "use a smaller --context or more text")

    def batches(rng):
        return random_windows(tokens, batch_size, context, rng)
    return batches
