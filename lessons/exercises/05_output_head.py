"""Lesson 5 exercises: pooling, the tied LM head, and counting GPT-2's parameters.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 05
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def mean_pool(x, padding_mask):
    """Mean pooling over the real tokens only (lesson 5, section 1).

    x: (B, T, C); padding_mask: (B, T) booleans, True for real tokens (every row has at least one).
    Return (B, C): for each sequence, the mean of x over its real positions.
    """
    raise NotImplementedError


def mean_pool_backward(dout, padding_mask):
    """The gradient of mean_pool with respect to x (lesson 5, section 1).

    dout: (B, C); padding_mask: (B, T). Return dx (B, T, C): each real position of sequence b gets
    dout[b] / n_b (n_b its number of real tokens), padded positions get 0.
    """
    raise NotImplementedError


def tied_head_backward(dlogits, h, E):
    """The backward of the tied LM head logits = h @ E.T (lesson 5, section 3).

    dlogits: (B, T, V); h: (B, T, C) the final hidden states; E: (V, C) the token embedding table.
    Return (dh, dE_head): dh (B, T, C), and the head's part of dE (V, C), summed over every position.
    """
    raise NotImplementedError


def gpt2_parameter_count(V, C, L, F, T):
    """The parameters of a GPT-2-like decoder with tied weights (lesson 5, section 3).

    V vocabulary, C d_model, L blocks, F d_ff, T max_len (learned positions). Count the token table
    (V x C), the positions (T x C), L pre-LN blocks (lesson 4's formula) and the final LayerNorm
    (2C). The tied head adds nothing. Return an int; for GPT-2 small (50257, 768, 12, 3072, 1024) it is
    124,439,808.
    """
    raise NotImplementedError
