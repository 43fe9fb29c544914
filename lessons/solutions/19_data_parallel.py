# ==================================================================================================
# SPOILER: the solutions of lesson 19's exercises (lessons/19-*.md: data parallelism).
# Write your own in lessons/exercises/19_data_parallel.py first, and check them with
#     python -m glassformer.lessons check 19
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 19 exercises: data parallelism simulated in one process (shards, all-reduce)."""
import numpy as np


def shard(x, y, n_ranks):
    """Split a batch between ranks (lesson 19).

    x: (N, ...), y: (N, ...), N divisible by n_ranks. Return a list of n_ranks pairs (x_r, y_r):
    rank r gets the r-th contiguous slice of N / n_ranks examples.
    """
    n = len(x) // n_ranks
    return [(x[r * n:(r + 1) * n], y[r * n:(r + 1) * n]) for r in range(n_ranks)]


def all_reduce_mean(grads_per_rank):
    """Average the gradients over ranks, as an all-reduce does (lesson 19).

    grads_per_rank: a list (one entry per rank) of lists of arrays (one per parameter, same shapes on
    every rank). Return a list with one entry per rank, each a list of the averaged arrays: after
    an all-reduce every rank holds the same mean. Give each rank its own arrays (no sharing).
    """
    mean = [np.mean(np.stack(parts), axis=0) for parts in zip(*grads_per_rank)]
    return [[g.copy() for g in mean] for _ in grads_per_rank]


def data_parallel_grad(grad_fn, x, y, n_ranks):
    """One data-parallel gradient: shard, compute on each rank, all-reduce (lesson 19).

    grad_fn(x, y) returns the list of gradients of the mean loss on that batch. Shard (x, y) with
    shard(), call grad_fn on each shard, average with all_reduce_mean, and return rank 0's list.
    With equal shards of a mean loss it equals grad_fn(x, y) on the whole batch.
    """
    grads = [grad_fn(xs, ys) for xs, ys in shard(x, y, n_ranks)]
    return all_reduce_mean(grads)[0]


def combine_uneven(grads_per_rank, counts):
    """The big-batch gradient when ranks count different numbers of tokens (lesson 19).

    grads_per_rank: as in all_reduce_mean, each the gradient of the MEAN loss over that rank's
    counts[r] tokens (e.g. answer tokens only, lesson 18). A plain average would weight each rank
    equally; the big batch weights each token equally. Return one list of arrays:
    sum_r counts[r] * g_r / sum_r counts[r].
    """
    total = float(sum(counts))
    return [sum(n * g for n, g in zip(counts, parts)) / total for parts in zip(*grads_per_rank)]
