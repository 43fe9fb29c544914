"""Lesson 14: RoPE, head scores, circuits."""
import numpy as np

from ...interp import head_scores
from ...layers.activations import softmax
from ...research import RotaryEmbedding
from ..grading import close, exercise, randn


def causal_weights(rng, B, H, T):
    scores = 3 * randn(rng, B, H, T, T)
    scores[:, :, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] = -np.inf
    return softmax(scores)


@exercise("14")
def rope_rotate(fn, rng):
    x = randn(rng, 2, 2, 5, 8)
    for offset, base in ((0, 10000.0), (7, 10000.0), (3, 100.0)):
        want = RotaryEmbedding(8, 64, base=base).rotate(x, offset=offset)
        close(fn(x.copy(), offset, base), want, f"rope_rotate(x, offset={offset}, base={base})")


@exercise("14")
def previous_token_score(fn, rng):
    att = causal_weights(rng, 3, 4, 6)
    close(fn(att.copy()), head_scores(att)["previous_token"], "previous_token_score(att)")
    prev = np.zeros((1, 1, 5, 5))
    prev[0, 0, 0, 0] = 1
    prev[0, 0, np.arange(1, 5), np.arange(4)] = 1           # a perfect previous-token head
    close(fn(prev), [1.0], "the score of a head that always looks at t - 1")


@exercise("14")
def induction_score(fn, rng):
    for prefix, period, T in ((1, 4, 9), (0, 3, 6), (2, 3, 10)):
        att = causal_weights(rng, 2, 3, T)
        close(fn(att.copy(), period, prefix), head_scores(att, period=period, prefix=prefix)["induction"],
              f"induction_score(att, period={period}, prefix={prefix}) with T={T}")


@exercise("14")
def copy_fraction(fn, rng):
    c = randn(rng, 6, 6)
    c[[0, 2, 3], [0, 2, 3]] = 10.0                          # rows 0, 2, 3 copy
    c[[1, 4, 5], [1, 4, 5]] = -10.0
    close(fn(c), 0.5, "copy_fraction of a circuit whose rows 0, 2, 3 copy")
    close(fn(np.eye(4)), 1.0, "copy_fraction(identity)")
