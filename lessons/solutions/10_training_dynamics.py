# ==================================================================================================
# SPOILER: the solutions of lesson 10's exercises (lessons/10-training-dynamics.md).
# Write your own in lessons/exercises/10_training_dynamics.py first, and check them with
#     python -m glassformer.lessons check 10
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 10 exercises: the numbers that read a training run (baselines, accuracies, confusions)."""
import numpy as np


def majority_baseline(labels, n_classes):
    """The accuracy of always answering the most common label (lesson 10, section 2).

    labels: (N,) integers in 0..n_classes-1, N > 0. Return a float: the count of the most frequent
    label over N. A model that does not beat this has learned nothing from the input.
    """
    return float(np.bincount(labels, minlength=n_classes).max() / len(labels))


def per_group_accuracy(preds, targets, groups, n_groups):
    """Accuracy per group, e.g. per operation of the digit tasks (lesson 10, section 2).

    preds, targets, groups: (N,) integers; groups in 0..n_groups-1. Return a float array (n_groups,):
    the fraction of correct predictions among the examples of each group, nan for an empty group.
    """
    correct = (preds == targets).astype(float)
    counts = np.bincount(groups, minlength=n_groups)
    hits = np.bincount(groups, weights=correct, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def confusion_matrix(preds, targets, n_classes):
    """Which answers are mistaken for which (lesson 10, section 4).

    preds, targets: (N,) integers in 0..n_classes-1. Return an int array (n_classes, n_classes) whose
    [i, j] entry counts the examples with target i predicted as j (the diagonal holds the correct).
    """
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (targets, preds), 1)
    return out
