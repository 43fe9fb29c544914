"""Lesson 14 exercises: RoPE, head scores, and reading a circuit.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 14
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def rope_rotate(x, offset=0, base=10000.0):
    """Rotary position embedding (Su et al. 2021; lesson 14, section 2).

    x: (B, H, T, D), D even; position t of x is the absolute position offset + t. Rotate each pair
    (x[..., 2i], x[..., 2i+1]) by the angle pos * theta_i, theta_i = base ** (-2i / D):
        out[2i]   = x[2i] cos - x[2i+1] sin
        out[2i+1] = x[2i] sin + x[2i+1] cos.
    Return the rotated array, shaped like x.
    """
    raise NotImplementedError


def previous_token_score(att):
    """How much each head looks at the previous token (lesson 14, section 5).

    att: (B, H, T, T) causal attention weights. Return (H,): the mean of att[b, h, t, t - 1] over
    every b and every query t = 1..T-1 (query 0 has no previous token).
    """
    raise NotImplementedError


def induction_score(att, period, prefix=1):
    """How much each head acts as an induction head (lesson 14, sections 3 and 5).

    att: (B, H, T, T). Each row is `prefix` tokens, a random sequence r of length `period`, then r
    again. A query t in the second repeat (prefix + period <= t < prefix + 2 period) should look at
    the token after the earlier copy of its own token: key t - period + 1. Return (H,): the mean
    weight on that key over every b and every such t.
    """
    raise NotImplementedError


def copy_fraction(circuit):
    """How much an OV circuit copies (lesson 14, section 6).

    circuit: (V, V), row i the logits a head writes when it attends to token i. Return a float:
    the fraction of rows whose largest entry is on the diagonal (the head promotes the token it read).
    """
    raise NotImplementedError
