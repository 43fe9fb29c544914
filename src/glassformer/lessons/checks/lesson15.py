"""Lesson 15: initialisation and dropout."""
import numpy as np

from ..grading import close, exercise, expect, randn


def draw(fn, d_in, d_out, seed):
    W = np.asarray(fn(d_in, d_out, np.random.default_rng(seed)), dtype=np.float64)
    expect(W.shape == (d_in, d_out), f"the matrix for ({d_in}, {d_out}) has shape {W.shape}")
    return W


@exercise("15")
def xavier_uniform(fn, rng):
    for d_in, d_out in ((400, 600), (1000, 50)):
        W = draw(fn, d_in, d_out, 1)
        a = np.sqrt(6 / (d_in + d_out))
        expect(np.abs(W).max() <= a, f"({d_in}, {d_out}): an entry {np.abs(W).max():.4f} lies outside "
                                     f"[-a, a], a = sqrt(6 / (d_in + d_out)) = {a:.4f}")
        expect(np.abs(W).max() > 0.98 * a, f"({d_in}, {d_out}): the largest |entry| is "
                                           f"{np.abs(W).max():.4f}, far inside a = {a:.4f}")
        close(W.std(), np.sqrt(2 / (d_in + d_out)), f"the std of a ({d_in}, {d_out}) matrix", rtol=0.02)
        expect(abs(W.mean()) < 0.01 * a, f"({d_in}, {d_out}): the mean is {W.mean():.2e}, not about 0")
    expect(np.array_equal(draw(fn, 30, 20, 5), draw(fn, 30, 20, 5)),
           "two calls with the same seed differ: draw from the rng argument")


@exercise("15")
def he_normal(fn, rng):
    for d_in, d_out in ((500, 400), (50, 2000)):
        W = draw(fn, d_in, d_out, 2)
        std = np.sqrt(2 / d_in)
        close(W.std(), std, f"the std of a ({d_in}, {d_out}) matrix (sqrt(2 / d_in))", rtol=0.02)
        expect(abs(W.mean()) < 0.02 * std, f"({d_in}, {d_out}): the mean is {W.mean():.2e}, not about 0")
        tail = (np.abs(W) > 2 * std).mean()
        expect(0.04 < tail < 0.051, f"({d_in}, {d_out}): {tail:.3f} of the entries lie beyond 2 std; "
                                    "a normal distribution has 0.046")
    expect(np.array_equal(draw(fn, 30, 20, 5), draw(fn, 30, 20, 5)),
           "two calls with the same seed differ: draw from the rng argument")


@exercise("15")
def dropout_forward(fn, rng):
    x = randn(rng, 200, 500)
    for p in (0.1, 0.5):
        out, mask = fn(x.copy(), p, np.random.default_rng(3), True)
        out, mask = np.asarray(out, dtype=np.float64), np.asarray(mask, dtype=np.float64)
        expect(out.shape == x.shape and mask.shape == x.shape, f"p={p}: out and mask must be shaped like x")
        dropped = (out == 0).mean()
        expect(abs(dropped - p) < 0.01, f"p={p}: {dropped:.3f} of the entries were dropped")
        kept = out != 0
        close(out[kept], x[kept] / (1 - p), f"p={p}: the kept entries (scaled by 1 / (1 - p))")
        close(out, x * mask, f"p={p}: out should be x * mask")
        ones, _ = fn(np.ones((400, 500)), p, np.random.default_rng(4), True)
        close(np.mean(ones), 1.0, f"p={p}: the mean output for an input of ones (inverted dropout "
                                  "keeps the expectation)", rtol=0.01)
    again = fn(x.copy(), 0.5, np.random.default_rng(3), True)[0]
    expect(np.array_equal(np.asarray(again), fn(x.copy(), 0.5, np.random.default_rng(3), True)[0]),
           "two calls with the same seed differ: draw from the rng argument")
    out, mask = fn(x.copy(), 0.5, np.random.default_rng(3), False)
    close(out, x, "eval mode (training=False) must return x unchanged", rtol=0, atol=0)
    expect(mask is None, "eval mode must return mask None")
    out, mask = fn(x.copy(), 0.0, np.random.default_rng(3), True)
    close(out, x, "p = 0 must return x unchanged", rtol=0, atol=0)


@exercise("15")
def dropout_backward(fn, rng):
    dout = randn(rng, 4, 6)
    mask = (rng.random((4, 6)) >= 0.3) / 0.7
    close(fn(dout.copy(), mask.copy()), dout * mask, "dx = dout * mask (kept entries, scaled)")
    close(fn(dout.copy(), None), dout, "dx in eval mode (mask None)")
