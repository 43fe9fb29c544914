"""Lesson 3: LayerNorm, RMSNorm, the FFN, residuals."""
from ...layers import FeedForward, LayerNorm, RMSNorm
from ..grading import close, exercise, randn


@exercise("03")
def layer_norm_forward(fn, rng):
    x, gamma, beta = 3 * randn(rng, 2, 4, 8) + 1, randn(rng, 8), randn(rng, 8)
    for eps in (1e-5, 0.5):
        ln = LayerNorm(8, eps=eps, dtype="float64")
        ln.gamma[...], ln.beta[...] = gamma, beta
        close(fn(x.copy(), gamma.copy(), beta.copy(), eps), ln.forward(x), f"LayerNorm(x) with eps={eps}")


@exercise("03")
def rms_norm_forward(fn, rng):
    x, g = 3 * randn(rng, 2, 4, 8) + 1, randn(rng, 8)
    for eps in (1e-6, 0.5):
        rms = RMSNorm(8, eps=eps, dtype="float64")
        rms.g[...] = g
        close(fn(x.copy(), g.copy(), eps), rms.forward(x), f"RMSNorm(x) with eps={eps}")


@exercise("03")
def ffn_forward(fn, rng):
    ffn = FeedForward(6, 10, rng, dtype="float64")
    ffn.fc1.b[...], ffn.fc2.b[...] = randn(rng, 10), randn(rng, 6)
    x = randn(rng, 2, 5, 6)
    got = fn(x.copy(), ffn.fc1.W.copy(), ffn.fc1.b.copy(), ffn.fc2.W.copy(), ffn.fc2.b.copy())
    close(got, ffn.forward(x), "FFN(x)")


@exercise("03")
def residual_backward(fn, rng):
    ffn = FeedForward(6, 10, rng, dtype="float64")
    x, dout = randn(rng, 2, 3, 6), randn(rng, 2, 3, 6)
    ffn.forward(x)
    want = dout + ffn.backward(dout)
    ffn.zero_grad()
    ffn.forward(x)
    close(fn(dout.copy(), ffn.backward), want, "dx of x + FFN(x)")
