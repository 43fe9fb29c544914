"""Lesson 17 exercises: cross-attention forward and backward, and the decoder's shifted input.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 17
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def cross_attention_forward(x, memory, Wq, Wk, Wv, Wo, n_heads, memory_mask=None):
    """Cross-attention: the decoder's queries read the encoder's memory (lesson 17).

    x: (B, T, C) decoder states; memory: (B, S, C) encoder outputs; Wq, Wk, Wv, Wo: (C, C), no biases;
    memory_mask: None or (B, S) booleans, True for real source tokens. q = x Wq, k = memory Wk,
    v = memory Wv, split into n_heads heads (as in lesson 2); att = softmax(q k^T / sqrt(D)) with 0 on
    padded keys; y = att v with the heads merged back; return y @ Wo, of shape (B, T, C). No causal
    mask: every target position may read the whole source.
    """
    raise NotImplementedError


def cross_attention_backward(dout, x, memory, Wq, Wk, Wv, Wo, n_heads, memory_mask=None):
    """The backward of cross_attention_forward with respect to both of its inputs (lesson 17).

    dout: (B, T, C); the other arguments as in the forward (recompute what you need). Return
    (dx, dmemory): (B, T, C) and (B, S, C). The memory is used twice, by k and by v, so its two
    gradients add; in a full model dmemory is what flows back into the encoder.
    """
    raise NotImplementedError


def shift_right(targets, bos_id):
    """The decoder's input under teacher forcing (lesson 17).

    targets: (B, T) the target token ids. Return (B, T) ints: bos_id, then targets[:, :-1]. At
    position t the decoder then sees the true tokens before t and is trained to predict targets[:, t].
    """
    raise NotImplementedError
