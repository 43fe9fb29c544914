"""Lesson 16: a character model."""
import numpy as np

from ..grading import close, exercise, expect, same, unpack


@exercise("16")
def bigram_counts(fn, rng):
    same(np.asarray(fn(np.array([0, 1, 1, 2, 0, 1]), 3)), np.array([[0, 2, 0], [0, 1, 1], [1, 0, 0]]),
         "bigram_counts([0, 1, 1, 2, 0, 1], 3)")
    ids = rng.integers(0, 5, 300)
    want = np.array([[np.sum((ids[:-1] == a) & (ids[1:] == b)) for b in range(5)] for a in range(5)])
    same(np.asarray(fn(ids.copy(), 5)), want, "bigram_counts of 300 random ids")


@exercise("16")
def bigram_log_probs(fn, rng):
    counts = np.array([[0, 2, 0], [0, 1, 1], [5, 0, 0]])
    for alpha in (1.0, 0.1):
        want = np.log((counts + alpha) / (counts.sum(1, keepdims=True) + 3 * alpha))
        close(fn(counts.copy(), alpha), want, f"bigram_log_probs(counts, alpha={alpha})")


@exercise("16")
def bigram_loss(fn, rng):
    V = 4
    uniform = np.full((V, V), -np.log(V))
    close(fn(uniform, rng.integers(0, V, 50)), np.log(V), "the loss of a uniform model (log V)")
    lp = np.log(rng.dirichlet(np.ones(V), V))
    ids = rng.integers(0, V, 40)
    close(fn(lp.copy(), ids.copy()), -np.mean([lp[a, b] for a, b in zip(ids[:-1], ids[1:])]),
          "bigram_loss on 40 random ids")


@exercise("16")
def get_batch(fn, rng):
    ids = rng.permutation(300)                              # distinct values: a window's start is findable
    x, y = unpack(fn(ids.copy(), 8, 16, np.random.default_rng(0)), ("x", "y"))
    x, y = np.asarray(x), np.asarray(y)
    expect(x.shape == (16, 8) and y.shape == (16, 8), f"x and y should be (16, 8), got {x.shape}, {y.shape}")
    where = {int(v): i for i, v in enumerate(ids)}
    starts = [where[int(row[0])] for row in x]
    for r, s in enumerate(starts):
        same(x[r], ids[s:s + 8], f"x[{r}] (a window of ids)")
        same(y[r], ids[s + 1:s + 9], f"y[{r}] (x[{r}] shifted by one)")
    expect(len(set(starts)) > 8, f"only {len(set(starts))} distinct starts in 16 rows: draw them at random")
    x2, _ = unpack(fn(ids.copy(), 8, 16, np.random.default_rng(0)), ("x", "y"))
    same(np.asarray(x2), x, "a second batch with the same seed (draw from the rng argument)")
