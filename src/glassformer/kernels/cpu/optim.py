"""Adam over cache-sized pieces, and the sum of squares as BLAS dot products over the same pieces.

Laid over adam_step, sum_squares and grad_norm of optim/optimizers.py.
"""
import math

import numpy as np

from ... import backend
from ...backend import array_module, upcast

CACHE_SIZED = 1 << 16                   # elements: 256 KB of float32 per array in one Adam call
SHORT = 1 << 16                         # numbers: a float32 dot this long is as accurate as a pairwise sum


def cache_sized(a):
    """A long flat NumPy run as views of at most CACHE_SIZED elements, so that each of an update's
    passes over p, g, m, v stays in the CPU's cache (one pass over a 3 MB buffer streams it from memory:
    measured 1.6x slower than pieces); other arrays as they are."""
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.size <= CACHE_SIZED:
        return [a]
    return [a[i:i + CACHE_SIZED] for i in range(0, a.size, CACHE_SIZED)]


@backend.accelerates("adam_step", device="cpu")
def adam_step_cpu(params, ms, vs, t, settings):
    """adam_step(): each (p, g, m, v) in cache-sized pieces, the update as in-place passes."""
    t += 1
    lr, b1, b2, eps, decoupled, weight_decays = settings
    step_size, eps_hat = bias_corrected(lr, b1, b2, eps, t)
    for (p, g), m, v, wd in zip(params, ms, vs, weight_decays):
        for pieces in zip(*map(cache_sized, (p, g, m, v))):
            adam_piece(*pieces, wd, lr, b1, b2, decoupled, step_size, eps_hat)
    return t


def bias_corrected(lr, b1, b2, eps, t):
    """(step size, eps): Adam's two bias corrections at step t folded into lr and eps, so that
    p -= step m / (sqrt v + eps) on the raw moments is p -= lr m_hat / (sqrt v_hat + eps)."""
    return lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t), eps * math.sqrt(1 - b2 ** t)


def adam_piece(p, g, m, v, wd, lr, b1, b2, decoupled, step_size, eps_hat):
    """One Adam/AdamW update of a piece in place: five passes and one scratch buffer."""
    if wd:
        if decoupled:
            p *= 1.0 - lr * wd                                      # AdamW: shrink the weight itself
        else:
            g = g + wd * p
    xp = array_module(p)
    u = xp.multiply(g, 1 - b1, out=xp.empty_like(m))               # one scratch buffer, reused:
    m *= b1
    m += u                                                          # m = b1 m + (1 - b1) g
    xp.multiply(g, g, out=u)
    u *= 1 - b2
    v *= b2
    v += u                                                          # v = b2 v + (1 - b2) g^2
    xp.sqrt(v, out=u)
    u += eps_hat
    xp.divide(step_size * m, u, out=u)
    p -= u                                                          # p -= step m / (sqrt v + eps)


@backend.accelerates("sum_squares", device="cpu")
def sum_squares_cpu(g):
    """sum_squares(): up to SHORT numbers the dot product g . g, one BLAS pass that writes no
    squared copy (6x faster); a longer g keeps NumPy's pairwise sum, whose float32 error stays near
    1e-8 where BLAS's running dot drifts (2e-4 at 38M numbers, measured)."""
    g = upcast(g).reshape(-1)
    if g.size <= SHORT:
        return g @ g
    return (g * g).sum()


@backend.accelerates("grad_norm", device="cpu")
def grad_norm_cpu(params):
    """grad_norm(): the sum of squares over the same cache-sized pieces as the Adam update."""
    xp = array_module(params[0][1])
    return xp.sqrt(sum(sum_squares_cpu(piece) for _, g in params for piece in cache_sized(g)))
