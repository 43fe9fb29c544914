"""Lesson 19: data parallelism, simulated in one process."""
import numpy as np

from ...layers.loss import cross_entropy_forward, cross_entropy_backward
from ..grading import Fail, close, exercise, expect, randn, same


def softmax_regression_grad(W):
    """grad_fn(x, y) -> [dW] of the mean cross-entropy of logits x @ W."""
    def grad_fn(x, y):
        loss, cache = cross_entropy_forward(x @ W, y)
        return [x.T @ cross_entropy_backward(1.0, cache)]
    return grad_fn


@exercise("19")
def shard(fn, rng):
    x, y = np.arange(24).reshape(12, 2), np.arange(12)
    got = fn(x.copy(), y.copy(), 3)
    expect(got is not None and len(got) == 3, "shard(x, y, 3) should return a list of 3 (x_r, y_r) pairs")
    for r, (xr, yr) in enumerate(got):
        same(np.asarray(xr), x[4 * r:4 * r + 4], f"x of rank {r}")
        same(np.asarray(yr), y[4 * r:4 * r + 4], f"y of rank {r}")


@exercise("19")
def all_reduce_mean(fn, rng):
    grads = [[randn(rng, 3, 2), randn(rng, 4)] for _ in range(4)]
    got = fn([[g.copy() for g in rank] for rank in grads])
    expect(got is not None and len(got) == 4, "all_reduce_mean should return one list per rank (4)")
    for r, rank in enumerate(got):
        expect(len(rank) == 2, f"rank {r} should hold 2 arrays, got {len(rank)}")
        close(rank[0], np.mean([g[0] for g in grads], axis=0), f"rank {r}'s first gradient")
        close(rank[1], np.mean([g[1] for g in grads], axis=0), f"rank {r}'s second gradient")
    got[0][0][...] = 0.0
    if not np.any(np.asarray(got[1][0])):
        raise Fail("writing into rank 0's result changed rank 1's: give each rank its own arrays")


@exercise("19")
def data_parallel_grad(fn, rng):
    W = randn(rng, 5, 4)
    x, y = randn(rng, 12, 5), rng.integers(0, 4, 12)
    grad_fn = softmax_regression_grad(W)
    want = grad_fn(x, y)
    for n_ranks in (1, 2, 4):
        got = fn(grad_fn, x.copy(), y.copy(), n_ranks)
        expect(got is not None and len(got) == 1, f"{n_ranks} ranks: should return a list of 1 gradient")
        close(got[0], want[0], f"the data-parallel gradient over {n_ranks} ranks (= the big batch's)")


@exercise("19")
def combine_uneven(fn, rng):
    W = randn(rng, 5, 4)
    x, y = randn(rng, 10, 5), rng.integers(0, 4, 10)
    grad_fn = softmax_regression_grad(W)
    cuts = [0, 2, 7, 10]                                    # ranks with 2, 5 and 3 examples
    grads = [grad_fn(x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:])]
    got = fn(grads, [2, 5, 3])
    expect(got is not None and len(got) == 1, "should return a list of 1 gradient")
    close(got[0], grad_fn(x, y)[0], "the combined gradient of shards of 2, 5 and 3 (= the big batch's)")


def adam_reference(p, g, m, v, t, lr, b1, b2, eps):
    """Textbook Adam on the whole vector: (new p, new m, new v)."""
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g ** 2
    return p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), m, v


@exercise("19")
def zero1_adam_step(fn, rng):
    n, n_ranks, lr, (b1, b2), eps = 10, 3, 1e-2, (0.9, 0.999), 1e-8
    bounds = [r * n // n_ranks for r in range(n_ranks + 1)]          # [0, 3, 6, 10]: uneven
    p, m, v = randn(rng, n), np.zeros(n), np.zeros(n)
    m_shards = [np.zeros(hi - lo) for lo, hi in zip(bounds, bounds[1:])]
    v_shards = [np.zeros(hi - lo) for lo, hi in zip(bounds, bounds[1:])]
    got = p.copy()
    for t in (1, 2, 3):
        g = randn(rng, n)
        p, m, v = adam_reference(p, g, m, v, t, lr, b1, b2, eps)
        got = fn(got.copy(), g.copy(), m_shards, v_shards, t, lr, (b1, b2), eps)
        expect(got is not None and np.shape(got) == (n,), f"step {t}: should return the ({n},) parameters")
        close(np.asarray(got), p, f"the parameters after step {t} (every rank's slice, gathered)")
        for r, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            close(m_shards[r], m[lo:hi], f"rank {r}'s m after step {t} (its slice {lo}:{hi} only)")
            close(v_shards[r], v[lo:hi], f"rank {r}'s v after step {t}")
