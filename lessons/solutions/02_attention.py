# ==================================================================================================
# SPOILER: the solutions of lesson 2's exercises (lessons/02-attention.md).
# Write your own in lessons/exercises/02_attention.py first, and check them with
#     python -m glassformer.lessons check 02
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 2 exercises: scaled dot-product attention, masks, heads."""
import numpy as np


def attention_forward(q, k, v, allowed=None):
    """Scaled dot-product attention for every (batch, head) at once (lesson 2, sections 1 to 4).

    q: (B, H, T, D) queries; k, v: (B, H, S, D) keys and values; allowed: None (every pair allowed)
    or a boolean array broadcastable to (B, H, T, S), True where query t may look at key s.
    Return (y, att): att = softmax(q k^T / sqrt(D)) over the last axis, with weight exactly 0 on the
    pairs that are not allowed (every row keeps at least one allowed key), and y = att @ v (B, H, T, D).
    Subtract each row's max before exp, so large scores cannot overflow.
    """
    D = q.shape[-1]
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(D)            # (B, H, T, S)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))  # exp(-inf) = 0 on masked pairs
    att = e / e.sum(axis=-1, keepdims=True)
    return att @ v, att


def causal_mask(T, S, offset=0):
    """The causal mask (lesson 2, section 4).

    Query t sits at absolute position offset + t, and keys are at positions 0..S-1. Return a boolean
    (T, S) array, True where key s <= offset + t (the query may look at it), False for the future.
    With offset = 0 and T = S this is the lower triangle, diagonal included.
    """
    return np.arange(S)[None, :] <= np.arange(T)[:, None] + offset


def padding_mask(lengths, S):
    """A key-padding mask from sequence lengths (lesson 2, section 4).

    lengths: (B,) the number of real tokens of each sequence (they come first, padding after).
    Return a boolean (B, 1, 1, S) array, True for real keys, so that it broadcasts over heads and
    queries in attention_forward.
    """
    real = np.arange(S)[None, :] < np.asarray(lengths)[:, None]   # (B, S)
    return real[:, None, None, :]


def split_heads(x, n_heads):
    """Cut the model dimension into heads (lesson 2, section 5).

    x: (B, T, C) with C = n_heads * D. Return (B, H, T, D) where head h holds the features
    x[..., h*D:(h+1)*D]. A plain reshape to (B, H, T, D) mixes positions: reshape, then transpose.
    """
    B, T, C = x.shape
    return x.reshape(B, T, n_heads, C // n_heads).transpose(0, 2, 1, 3)


def merge_heads(y):
    """The inverse of split_heads (lesson 2, section 5): (B, H, T, D) -> (B, T, H * D)."""
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)
