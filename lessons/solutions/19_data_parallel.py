# ==================================================================================================
# SPOILER: the solutions of lesson 19's exercises (lessons/19-*.md: data parallelism).
# Write your own in lessons/exercises/19_data_parallel.py first, and check them with
#     python -m glassformer.lessons check 19
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 19 exercises: data parallelism simulated in one process (shards, all-reduce, ZeRO-1)."""
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


def zero1_adam_step(p, g, m_shards, v_shards, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """One ZeRO-1 Adam step, every rank in turn (lesson 19, section 7).

    p, g: flat (n,) parameters and the all-reduced gradient, alike on every rank. m_shards, v_shards:
    one array per rank (n_ranks = len(m_shards)): rank r's Adam moments of its slice p[lo_r:lo_{r+1}],
    lo_r = r * n // n_ranks (the last rank takes what is left). For each rank, update its moments in
    place and its slice of the parameters with Adam (bias-corrected; t >= 1 is this step's number):
        m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  p -= lr m_hat / (sqrt(v_hat) + eps)
    with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t); then all-gather. Return the new (n,)
    parameters that every rank holds after the all-gather.
    """
    n, n_ranks = len(p), len(m_shards)
    b1, b2 = betas
    new = p.copy()
    for r in range(n_ranks):                                # each rank: its slice, its moments only
        lo, hi = r * n // n_ranks, (r + 1) * n // n_ranks
        m, v, g_r = m_shards[r], v_shards[r], g[lo:hi]
        m[...] = b1 * m + (1 - b1) * g_r
        v[...] = b2 * v + (1 - b2) * g_r ** 2
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        new[lo:hi] = p[lo:hi] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return new                                              # the all-gather: every slice, end to end
