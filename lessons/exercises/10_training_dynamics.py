"""Lesson 10 exercises: the numbers that read a training run (baselines, accuracies, confusions).

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 10
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def majority_baseline(labels, n_classes):
    """The accuracy of always answering the most common label (lesson 10, section 2).

    labels: (N,) integers in 0..n_classes-1, N > 0. Return a float: the count of the most frequent
    label over N. A model that does not beat this has learned nothing from the input.
    """
    raise NotImplementedError


def per_group_accuracy(preds, targets, groups, n_groups):
    """Accuracy per group, e.g. per operation of the digit tasks (lesson 10, section 2).

    preds, targets, groups: (N,) integers; groups in 0..n_groups-1. Return a float array (n_groups,):
    the fraction of correct predictions among the examples of each group, nan for an empty group.
    """
    raise NotImplementedError


def confusion_matrix(preds, targets, n_classes):
    """Which answers are mistaken for which (lesson 10, section 4).

    preds, targets: (N,) integers in 0..n_classes-1. Return an int array (n_classes, n_classes) whose
    [i, j] entry counts the examples with target i predicted as j (the diagonal holds the correct).
    """
    raise NotImplementedError
