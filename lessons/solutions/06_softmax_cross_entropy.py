# ==================================================================================================
# SPOILER: the solutions of lesson 6's exercises (lessons/06-softmax-cross-entropy.md).
# Write your own in lessons/exercises/06_softmax_cross_entropy.py first, and check them with
#     python -m glassformer.lessons check 06
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 6 exercises: a stable softmax, cross-entropy and its gradient."""
import numpy as np


def logsumexp(z):
    """log(sum(exp(z))) over the last axis, without overflow (lesson 6, section 1).

    z: (..., V). Return an array of shape z.shape[:-1]. Use the max trick:
    logsumexp(z) = m + log(sum(exp(z - m))) with m = max(z), so that [1000, 1000] gives 1000 + log 2
    and [-1000, -1000] gives -1000 + log 2 (the naive formula gives inf and -inf).
    """
    m = z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]


def log_softmax(z):
    """log(softmax(z)) over the last axis, stable (lesson 6, section 2): z - logsumexp(z).

    z: (..., V). Return the same shape. Every row's exp sums to 1.
    """
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def cross_entropy(logits, targets, ignore_index=None):
    """The mean cross-entropy over the counted tokens (lesson 6, sections 2 and 4).

    logits: (N, V); targets: (N,) integer classes. Tokens whose target equals ignore_index are not
    counted. Return a float: mean over counted rows of -log softmax(logits)[row, target]
    (0.0 when no row is counted). Must not overflow for logits of 1e4.
    """
    counted = np.ones(len(targets), bool) if ignore_index is None else targets != ignore_index
    if not counted.any():
        return 0.0
    lp = log_softmax(logits[counted])
    return float(-lp[np.arange(len(lp)), targets[counted]].mean())


def cross_entropy_grad(logits, targets, ignore_index=None):
    """d cross_entropy / d logits (lesson 6, section 3): softmax minus one-hot, over the count.

    Same arguments as cross_entropy. Return (N, V): (softmax(logits) - onehot(targets)) / n on the
    counted rows, where n is the number of counted rows, and 0 on ignored rows.
    """
    counted = np.ones(len(targets), bool) if ignore_index is None else targets != ignore_index
    p = np.exp(log_softmax(logits))
    p[np.arange(len(targets)), np.where(counted, targets, 0)] -= 1.0
    return p * counted[:, None] / max(counted.sum(), 1)
