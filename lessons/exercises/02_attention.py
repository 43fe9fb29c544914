"""Lesson 2 exercises: scaled dot-product attention, masks, heads.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 02
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def attention_forward(q, k, v, allowed=None):
    """Scaled dot-product attention for every (batch, head) at once (lesson 2, sections 1 to 4).

    q: (B, H, T, D) queries; k, v: (B, H, S, D) keys and values; allowed: None (every pair allowed)
    or a boolean array broadcastable to (B, H, T, S), True where query t may look at key s.
    Return (y, att): att = softmax(q k^T / sqrt(D)) over the last axis, with weight exactly 0 on the
    pairs that are not allowed (every row keeps at least one allowed key), and y = att @ v (B, H, T, D).
    Subtract each row's max before exp, so large scores cannot overflow.
    """
    raise NotImplementedError


def causal_mask(T, S, offset=0):
    """The causal mask (lesson 2, section 4).

    Query t sits at absolute position offset + t, and keys are at positions 0..S-1. Return a boolean
    (T, S) array, True where key s <= offset + t (the query may look at it), False for the future.
    With offset = 0 and T = S this is the lower triangle, diagonal included.
    """
    raise NotImplementedError


def padding_mask(lengths, S):
    """A key-padding mask from sequence lengths (lesson 2, section 4).

    lengths: (B,) the number of real tokens of each sequence (they come first, padding after).
    Return a boolean (B, 1, 1, S) array, True for real keys, so that it broadcasts over heads and
    queries in attention_forward.
    """
    raise NotImplementedError


def split_heads(x, n_heads):
    """Cut the model dimension into heads (lesson 2, section 5).

    x: (B, T, C) with C = n_heads * D. Return (B, H, T, D) where head h holds the features
    x[..., h*D:(h+1)*D]. A plain reshape to (B, H, T, D) mixes positions: reshape, then transpose.
    """
    raise NotImplementedError


def merge_heads(y):
    """The inverse of split_heads (lesson 2, section 5): (B, H, T, D) -> (B, T, H * D)."""
    raise NotImplementedError
