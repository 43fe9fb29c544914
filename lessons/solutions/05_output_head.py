# ==================================================================================================
# SPOILER: the solutions of lesson 5's exercises (lessons/05-output-head.md).
# Write your own in lessons/exercises/05_output_head.py first, and check them with
#     python -m glassformer.lessons check 05
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 5 exercises: pooling, the tied LM head, and counting GPT-2's parameters."""
import numpy as np


def mean_pool(x, padding_mask):
    """Mean pooling over the real tokens only (lesson 5, section 1).

    x: (B, T, C); padding_mask: (B, T) booleans, True for real tokens (every row has at least one).
    Return (B, C): for each sequence, the mean of x over its real positions.
    """
    m = np.asarray(padding_mask, dtype=x.dtype)[:, :, None]     # (B, T, 1)
    return (x * m).sum(axis=1) / m.sum(axis=1)


def mean_pool_backward(dout, padding_mask):
    """The gradient of mean_pool with respect to x (lesson 5, section 1).

    dout: (B, C); padding_mask: (B, T). Return dx (B, T, C): each real position of sequence b gets
    dout[b] / n_b (n_b its number of real tokens), padded positions get 0.
    """
    m = np.asarray(padding_mask, dtype=dout.dtype)          # (B, T)
    w = m / m.sum(axis=1, keepdims=True)
    return dout[:, None, :] * w[:, :, None]


def tied_head_backward(dlogits, h, E):
    """The backward of the tied LM head logits = h @ E.T (lesson 5, section 3).

    dlogits: (B, T, V); h: (B, T, C) the final hidden states; E: (V, C) the token embedding table.
    Return (dh, dE_head): dh (B, T, C), and the head's part of dE (V, C), summed over every position.
    """
    V, C = E.shape
    dh = dlogits @ E
    dE = dlogits.reshape(-1, V).T @ h.reshape(-1, C)
    return dh, dE


def gpt2_parameter_count(V, C, L, F, T):
    """The parameters of a GPT-2-like decoder with tied weights (lesson 5, section 3).

    V vocabulary, C d_model, L blocks, F d_ff, T max_len (learned positions). Count the token table
    (V x C), the positions (T x C), L pre-LN blocks (lesson 4's formula) and the final LayerNorm
    (2C). The tied head adds nothing. Return an int; for GPT-2 small (50257, 768, 12, 3072, 1024) it is
    124,439,808.
    """
    block = (3 * C * C + 3 * C) + (C * C + C) + (C * F + F + F * C + C) + 4 * C
    return V * C + T * C + L * block + 2 * C
