# ==================================================================================================
# SPOILER: the solutions of lesson 18's exercises (lessons/18-*.md: GPT-2, loading and fine-tuning).
# Write your own in lessons/exercises/18_gpt2_finetuning.py first, and check them with
#     python -m glassformer.lessons check 18
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 18 exercises: GPT-2's fused attention weights, and a loss on the answer tokens only."""
import numpy as np


def split_qkv(c_attn_w, c_attn_b):
    """Split GPT-2's fused attention projection (lesson 18, loading GPT-2).

    GPT-2 computes [q | k | v] = x @ c_attn_w + c_attn_b with c_attn_w (C, 3C) and c_attn_b (3C,):
    the first C output columns are q, the next C are k, the last C are v.
    Return (Wq, Wk, Wv, bq, bk, bv): three (C, C) matrices and three (C,) vectors.
    """
    C = c_attn_w.shape[0]
    Wq, Wk, Wv = (c_attn_w[:, i * C:(i + 1) * C] for i in range(3))
    bq, bk, bv = (c_attn_b[i * C:(i + 1) * C] for i in range(3))
    return Wq, Wk, Wv, bq, bk, bv


def answer_only_targets(ids, answer_start, lengths, ignore_index=-100):
    """Inputs and targets for fine-tuning on question/answer pairs (lesson 18, the answer-only loss).

    ids: (B, T) each row a question then its answer, then padding; answer_start: (B,) the position of
    each row's first answer token; lengths: (B,) each row's number of real tokens. Return
    (inputs, targets), both (B, T - 1): inputs = ids[:, :-1]; targets = ids[:, 1:], except that a
    target at position j (the token ids[b, j + 1]) is ignore_index unless it is an answer token,
    answer_start[b] <= j + 1 < lengths[b]. The model still reads the question; it is not graded on it.
    """
    inputs, targets = ids[:, :-1], ids[:, 1:].copy()
    pos = np.arange(1, ids.shape[1])[None, :]               # the position of each target token
    graded = (pos >= np.asarray(answer_start)[:, None]) & (pos < np.asarray(lengths)[:, None])
    targets[~graded] = ignore_index
    return inputs, targets


def answer_only_loss(logits, targets, ignore_index=-100):
    """The mean cross-entropy over the answer tokens, and its gradient (lesson 18).

    logits: (B, T, V); targets: (B, T) with ignore_index where nothing is graded. Return
    (loss, dlogits): the mean of -log softmax(logits)[target] over the graded positions only (a
    float), and dlogits (B, T, V) = (softmax - onehot) / n_graded on graded positions, 0 elsewhere.
    """
    B, T, V = logits.shape
    z, t = logits.reshape(-1, V), targets.reshape(-1)
    graded = t != ignore_index
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    safe = np.where(graded, t, 0)
    n = max(int(graded.sum()), 1)
    loss = float(-(log_p[np.arange(len(t)), safe] * graded).sum() / n)
    d = np.exp(log_p)
    d[np.arange(len(t)), safe] -= 1.0
    return loss, (d * graded[:, None] / n).reshape(B, T, V)
