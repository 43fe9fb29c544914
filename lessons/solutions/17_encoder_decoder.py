# ==================================================================================================
# SPOILER: the solutions of lesson 17's exercises (lessons/17-*.md: encoder-decoder, cross-attention).
# Write your own in lessons/exercises/17_encoder_decoder.py first, and check them with
#     python -m glassformer.lessons check 17
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 17 exercises: cross-attention forward and backward, and the decoder's shifted input."""
import numpy as np


def _heads(x, H):                                           # (B, T, C) -> (B, H, T, D)
    B, T, C = x.shape
    return x.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)


def _merge(y):                                              # (B, H, T, D) -> (B, T, C)
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def _attend(x, memory, Wq, Wk, Wv, n_heads, memory_mask):
    q, k, v = _heads(x @ Wq, n_heads), _heads(memory @ Wk, n_heads), _heads(memory @ Wv, n_heads)
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])  # (B, H, T, S)
    if memory_mask is not None:
        scores = np.where(memory_mask[:, None, None, :], scores, -np.inf)
    att = np.exp(scores - scores.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    return q, k, v, att


def cross_attention_forward(x, memory, Wq, Wk, Wv, Wo, n_heads, memory_mask=None):
    """Cross-attention: the decoder's queries read the encoder's memory (lesson 17).

    x: (B, T, C) decoder states; memory: (B, S, C) encoder outputs; Wq, Wk, Wv, Wo: (C, C), no biases;
    memory_mask: None or (B, S) booleans, True for real source tokens. q = x Wq, k = memory Wk,
    v = memory Wv, split into n_heads heads (as in lesson 2); att = softmax(q k^T / sqrt(D)) with 0 on
    padded keys; y = att v with the heads merged back; return y @ Wo, of shape (B, T, C). No causal
    mask: every target position may read the whole source.
    """
    q, k, v, att = _attend(x, memory, Wq, Wk, Wv, n_heads, memory_mask)
    return _merge(att @ v) @ Wo


def cross_attention_backward(dout, x, memory, Wq, Wk, Wv, Wo, n_heads, memory_mask=None):
    """The backward of cross_attention_forward with respect to both of its inputs (lesson 17).

    dout: (B, T, C); the other arguments as in the forward (recompute what you need). Return
    (dx, dmemory): (B, T, C) and (B, S, C). The memory is used twice, by k and by v, so its two
    gradients add; in a full model dmemory is what flows back into the encoder.
    """
    q, k, v, att = _attend(x, memory, Wq, Wk, Wv, n_heads, memory_mask)
    dy = _heads(dout @ Wo.T, n_heads)                       # out = merge(y) @ Wo
    dv = att.swapaxes(-1, -2) @ dy                          # y = att @ v
    datt = dy @ v.swapaxes(-1, -2)
    dscores = att * (datt - (datt * att).sum(axis=-1, keepdims=True)) / np.sqrt(q.shape[-1])
    dq, dk = dscores @ k, dscores.swapaxes(-1, -2) @ q
    dx = _merge(dq) @ Wq.T
    dmemory = _merge(dk) @ Wk.T + _merge(dv) @ Wv.T
    return dx, dmemory


def shift_right(targets, bos_id):
    """The decoder's input under teacher forcing (lesson 17).

    targets: (B, T) the target token ids. Return (B, T) ints: bos_id, then targets[:, :-1]. At
    position t the decoder then sees the true tokens before t and is trained to predict targets[:, t].
    """
    return np.concatenate([np.full((targets.shape[0], 1), bos_id, dtype=targets.dtype),
                           targets[:, :-1]], axis=1)
