# ==================================================================================================
# SPOILER: the solutions of lesson 1's exercises (lessons/01-embeddings.md).
# Write your own in lessons/exercises/01_embeddings.py first, and check them with
#     python -m glassformer.lessons check 01
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 1 exercises: token embeddings and positional encodings."""
import numpy as np


def embedding_forward(W, ids):
    """Look up one row of the table per token id (lesson 1, section 2).

    W: (V, C) the embedding table; ids: (B, T) integer token ids.
    Return the (B, T, C) array whose [b, t] row is W[ids[b, t]].
    """
    return W[ids]


def embedding_backward(ids, dout, vocab_size):
    """The gradient of the lookup with respect to the table (lesson 1, section 2).

    ids: (B, T) token ids; dout: (B, T, C) the upstream gradient; vocab_size: V.
    Return dW of shape (V, C): row v is the sum of dout[b, t] over every (b, t) with ids[b, t] == v
    (rows of tokens that never appear are 0). A token used three times gets three rows added:
    `dW[ids] += dout` loses repeats, np.add.at does not.
    """
    C = dout.shape[-1]
    dW = np.zeros((vocab_size, C))
    np.add.at(dW, ids.reshape(-1), dout.reshape(-1, C))
    return dW


def sinusoidal_table(max_len, d_model):
    """The fixed positional table of Vaswani et al. (lesson 1, section 4).

    Return PE of shape (max_len, d_model) with, for pos = 0..max_len-1 and i = 0..d_model/2-1,
        PE[pos, 2i]     = sin(pos * w_i)
        PE[pos, 2i + 1] = cos(pos * w_i),     w_i = 10000 ** (-2i / d_model).
    d_model is even.
    """
    pos = np.arange(max_len)[:, None]                       # (T, 1)
    w = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)    # (C/2,)
    pe = np.empty((max_len, d_model))
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos * w), np.cos(pos * w)
    return pe


def shift_rotation(k, i, d_model):
    """The 2x2 matrix that moves pair i of the sinusoidal table k positions on (lesson 1, section 4).

    With w = 10000 ** (-2i / d_model) and the pair p(pos) = [sin(pos w), cos(pos w)] (a row vector),
    return R (2, 2) such that p(pos + k) = p(pos) @ R.T for every pos. Hint: expand
    sin(a + b) and cos(a + b); R depends on k and w only, not on pos.
    """
    w = 10000.0 ** (-2 * i / d_model)
    c, s = np.cos(k * w), np.sin(k * w)
    return np.array([[c, s], [-s, c]])


def learned_positions_backward(dout):
    """The gradient of a learned positional table P (lesson 1, section 5).

    The forward is out = x + P[:T] for x of shape (B, T, C), so every sequence of the batch reads the
    same rows. dout: (B, T, C). Return dP[:T], of shape (T, C).
    """
    return dout.sum(axis=0)
