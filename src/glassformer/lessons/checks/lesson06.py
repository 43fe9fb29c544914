"""Lesson 6: softmax and cross-entropy."""
import numpy as np

from ...layers.loss import cross_entropy_forward
from ..grading import close, exercise, expect, grad_close, numeric_vjp, randn


@exercise("06")
def logsumexp(fn, rng):
    with np.errstate(all="ignore"):
        close(fn(np.array([1000.0, 1000.0])), 1000 + np.log(2), "logsumexp([1000, 1000])")
        close(fn(np.array([-1000.0, -1000.0])), -1000 + np.log(2), "logsumexp([-1000, -1000])")
    z = randn(rng, 3, 5)
    close(fn(z.copy()), np.log(np.exp(z).sum(axis=-1)), "logsumexp of a (3, 5) array, per row")


@exercise("06")
def log_softmax(fn, rng):
    z = randn(rng, 4, 6)
    close(fn(z.copy()), np.log(np.exp(z) / np.exp(z).sum(-1, keepdims=True)), "log_softmax(z)")
    with np.errstate(all="ignore"):
        got = np.asarray(fn(np.array([[1e4, 0.0, -1e4]])), dtype=np.float64)
    close(got, [[0.0, -1e4, -2e4]], "log_softmax([[1e4, 0, -1e4]])")


def ce_cases(rng):
    logits = randn(rng, 6, 5)
    targets = np.array([1, 0, 4, 2, 2, 3])
    with_pad = targets.copy()
    with_pad[[1, 4]] = -100
    return logits, [(targets, None), (with_pad, -100)]


def counted(targets, ignore):
    """The rows the mean is over: every row, or those whose target is not ignore_index."""
    return np.ones(len(targets), bool) if ignore is None else targets != ignore


def count_slips(total, targets, ignore, what):
    """(value, hint) for the classic slips of a mean over rows: no division, or by every row."""
    n = int(counted(targets, ignore).sum())
    slips = [(total * n, f"{what} is not divided by the count: it is a mean over the {n} counted rows")]
    if n != len(targets):
        slips.append((total * n / len(targets), f"{what} is divided by all {len(targets)} rows: divide by "
                      f"the {n} rows whose target is not ignore_index"))
    return slips


def dlogits_of_mean(logits, targets, ignore):
    """The right answer, (softmax - one_hot) / count on the counted rows, 0 on the ignored ones."""
    keep = counted(targets, ignore)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(len(targets)), np.where(keep, targets, 0)] -= 1
    return p * keep[:, None] / keep.sum()


@exercise("06")
def cross_entropy(fn, rng):
    logits, cases = ce_cases(rng)
    for targets, ignore in cases:
        want = float(cross_entropy_forward(logits, targets, ignore)[0])
        got = fn(logits.copy(), targets.copy(), ignore)
        close(got, want, f"cross_entropy with ignore_index={ignore}",
              hints=count_slips(want, targets, ignore, "the loss"))
    with np.errstate(all="ignore"):
        got = fn(np.array([[1e4, 0.0], [0.0, 1e4]]), np.array([1, 1]))
    close(got, 5e3, "cross_entropy of logits [[1e4, 0], [0, 1e4]], targets [1, 1] (no overflow)")


@exercise("06")
def cross_entropy_grad(fn, rng):
    logits, cases = ce_cases(rng)
    for targets, ignore in cases:
        got = fn(logits.copy(), targets.copy(), ignore)
        x = logits.copy()
        numeric = numeric_vjp(lambda: cross_entropy_forward(x, targets, ignore)[0], {"z": x}, 1.0)["z"]
        grad_close(got, numeric, f"dlogits with ignore_index={ignore}",
                   hints=count_slips(dlogits_of_mean(logits, targets, ignore), targets, ignore, "the gradient"))
        if ignore is not None:
            expect(not np.asarray(got)[targets == ignore].any(), "ignored rows must get a zero gradient")
