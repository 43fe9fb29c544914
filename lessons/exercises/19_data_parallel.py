"""Lesson 19 exercises: data parallelism simulated in one process (shards, all-reduce, ZeRO-1).

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 19
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def shard(x, y, n_ranks):
    """Split a batch between ranks (lesson 19).

    x: (N, ...), y: (N, ...), N divisible by n_ranks. Return a list of n_ranks pairs (x_r, y_r):
    rank r gets the r-th contiguous slice of N / n_ranks examples.
    """
    raise NotImplementedError


def all_reduce_mean(grads_per_rank):
    """Average the gradients over ranks, as an all-reduce does (lesson 19).

    grads_per_rank: a list (one entry per rank) of lists of arrays (one per parameter, same shapes on
    every rank). Return a list with one entry per rank, each a list of the averaged arrays: after
    an all-reduce every rank holds the same mean. Give each rank its own arrays (no sharing).
    """
    raise NotImplementedError


def data_parallel_grad(grad_fn, x, y, n_ranks):
    """One data-parallel gradient: shard, compute on each rank, all-reduce (lesson 19).

    grad_fn(x, y) returns the list of gradients of the mean loss on that batch. Shard (x, y) with
    shard(), call grad_fn on each shard, average with all_reduce_mean, and return rank 0's list.
    With equal shards of a mean loss it equals grad_fn(x, y) on the whole batch.
    """
    raise NotImplementedError


def combine_uneven(grads_per_rank, counts):
    """The big-batch gradient when ranks count different numbers of tokens (lesson 19).

    grads_per_rank: as in all_reduce_mean, each the gradient of the MEAN loss over that rank's
    counts[r] tokens (e.g. answer tokens only, lesson 18). A plain average would weight each rank
    equally; the big batch weights each token equally. Return one list of arrays:
    sum_r counts[r] * g_r / sum_r counts[r].
    """
    raise NotImplementedError


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
    raise NotImplementedError
