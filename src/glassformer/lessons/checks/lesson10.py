"""Lesson 10: reading a training run."""
import numpy as np

from ..grading import close, exercise, same


@exercise("10")
def majority_baseline(fn, rng):
    close(fn(np.array([2, 2, 1, 0, 2]), 3), 0.6, "majority_baseline([2, 2, 1, 0, 2], 3)")
    labels = rng.integers(0, 10, 500)
    close(fn(labels.copy(), 10), np.bincount(labels).max() / 500, "majority_baseline of 500 random labels")
    close(fn(np.array([4]), 10), 1.0, "majority_baseline([4], 10)")


@exercise("10")
def per_group_accuracy(fn, rng):
    preds = np.array([1, 2, 3, 4, 5, 6])
    targets = np.array([1, 0, 3, 4, 0, 0])
    groups = np.array([0, 0, 1, 1, 1, 3])
    got = np.asarray(fn(preds, targets, groups, 4), dtype=np.float64)
    want = np.array([0.5, 2 / 3, np.nan, 0.0])
    same(np.isnan(got), np.isnan(want), "which groups are nan (group 2 has no examples)")
    close(np.nan_to_num(got), np.nan_to_num(want), "per_group_accuracy")
    p, t, g = rng.integers(0, 3, 300), rng.integers(0, 3, 300), rng.integers(0, 5, 300)
    want = np.array([(p[g == k] == t[g == k]).mean() for k in range(5)])
    close(fn(p.copy(), t.copy(), g.copy(), 5), want, "per_group_accuracy of 300 random examples")


@exercise("10")
def confusion_matrix(fn, rng):
    got = fn(np.array([0, 1, 1, 2, 2]), np.array([0, 1, 2, 2, 0]), 3)
    same(np.asarray(got), np.array([[1, 0, 1], [0, 1, 0], [0, 1, 1]]),
         "confusion_matrix(preds [0, 1, 1, 2, 2], targets [0, 1, 2, 2, 0], 3) as [target, pred]")
    p, t = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    want = np.array([[np.sum((t == i) & (p == j)) for j in range(4)] for i in range(4)])
    same(np.asarray(fn(p.copy(), t.copy(), 4)), want, "confusion_matrix of 200 random examples")
