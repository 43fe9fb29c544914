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


@exercise("06")
def cross_entropy(fn, rng):
    logits, cases = ce_cases(rng)
    for targets, ignore in cases:
        want = float(cross_entropy_forward(logits, targets, ignore)[0])
        got = fn(logits.copy(), targets.copy(), ignore)
        close(got, want, f"cross_entropy with ignore_index={ignore}")
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
        grad_close(got, numeric, f"dlogits with ignore_index={ignore}")
        if ignore is not None:
            expect(not np.asarray(got)[targets == ignore].any(), "ignored rows must get a zero gradient")
