"""Lesson 18 exercises: GPT-2's fused attention weights, and a loss on the answer tokens only.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 18
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def split_qkv(c_attn_w, c_attn_b):
    """Split GPT-2's fused attention projection (lesson 18, loading GPT-2).

    GPT-2 computes [q | k | v] = x @ c_attn_w + c_attn_b with c_attn_w (C, 3C) and c_attn_b (3C,):
    the first C output columns are q, the next C are k, the last C are v.
    Return (Wq, Wk, Wv, bq, bk, bv): three (C, C) matrices and three (C,) vectors.
    """
    raise NotImplementedError


def answer_only_targets(ids, answer_start, lengths, ignore_index=-100):
    """Inputs and targets for fine-tuning on question/answer pairs (lesson 18, the answer-only loss).

    ids: (B, T) each row a question then its answer, then padding; answer_start: (B,) the position of
    each row's first answer token; lengths: (B,) each row's number of real tokens. Return
    (inputs, targets), both (B, T - 1): inputs = ids[:, :-1]; targets = ids[:, 1:], except that a
    target at position j (the token ids[b, j + 1]) is ignore_index unless it is an answer token,
    answer_start[b] <= j + 1 < lengths[b]. The model still reads the question; it is not graded on it.
    """
    raise NotImplementedError


def answer_only_loss(logits, targets, ignore_index=-100):
    """The mean cross-entropy over the answer tokens, and its gradient (lesson 18).

    logits: (B, T, V); targets: (B, T) with ignore_index where nothing is graded. Return
    (loss, dlogits): the mean of -log softmax(logits)[target] over the graded positions only (a
    float), and dlogits (B, T, V) = (softmax - onehot) / n_graded on graded positions, 0 elsewhere.
    """
    raise NotImplementedError
