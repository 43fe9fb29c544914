"""Lesson 7: backpropagation by hand; each backward against the reference and finite differences."""
import numpy as np

from ...layers import GELU, LayerNorm, Linear, RMSNorm
from ...layers.activations import softmax
from ...layers.attention import attend, attention_mask
from ...layers.attention import attend_backward as reference_attend_backward
from ..grading import close, exercise, grad_close, numeric_vjp, randn, unpack


NO_TRANSPOSE = "a transpose is missing: dx = dout @ W^T and dW = x^T @ dout (the forward's W, turned round)"


@exercise("07")
def linear_backward(fn, rng):
    for d_in, d_out in ((4, 3), (4, 4)):                    # square: a missing transpose keeps the shape
        lin = Linear(d_in, d_out, rng, dtype="float64")
        x, dout = randn(rng, 2, 5, d_in), randn(rng, 2, 5, d_out)
        lin.forward(x)
        dx_ref = lin.backward(dout)
        dx, dW, db = unpack(fn(x.copy(), lin.W.copy(), dout.copy()), ("dx", "dW", "db"))
        size = f" (W {d_in}x{d_out})"
        close(dx, dx_ref, "dx" + size, hints=[(dout @ lin.W, NO_TRANSPOSE)] if d_in == d_out else ())
        close(dW, lin.dW, "dW" + size, hints=[(lin.dW.T, NO_TRANSPOSE)] if d_in == d_out else ())
        close(db, lin.db, "db" + size)


@exercise("07")
def gelu_backward(fn, rng):
    x, dout = 2 * randn(rng, 3, 7), randn(rng, 3, 7)
    gelu = GELU()
    gelu.forward(x)
    got = fn(x.copy(), dout.copy())
    close(got, gelu.backward(dout), "dx of GELU")
    grad_close(got, numeric_vjp(lambda: gelu.forward(x), {"x": x}, dout)["x"], "dx of GELU")


@exercise("07")
def softmax_backward(fn, rng):
    z, dprobs = randn(rng, 2, 3, 6), randn(rng, 2, 3, 6)
    got = fn(dprobs.copy(), softmax(z))
    grad_close(got, numeric_vjp(lambda: softmax(z), {"z": z}, dprobs)["z"], "dz of softmax")


@exercise("07")
def layer_norm_backward(fn, rng):
    C, eps = 6, 1e-5
    ln = LayerNorm(C, eps=eps, dtype="float64")
    ln.gamma[...], ln.beta[...] = randn(rng, C), randn(rng, C)
    x, dout = 2 * randn(rng, 2, 4, C) + 1, randn(rng, 2, 4, C)
    dx, dgamma, dbeta = unpack(fn(dout.copy(), x.copy(), ln.gamma.copy(), eps),
                               ("dx", "dgamma", "dbeta"))
    ln.forward(x)
    dx_ref = ln.backward(dout)
    close(dx, dx_ref, "dx")
    close(dgamma, ln.dgamma, "dgamma")
    close(dbeta, ln.dbeta, "dbeta")
    grad_close(dx, numeric_vjp(lambda: ln.forward(x), {"x": x}, dout)["x"], "dx")


@exercise("07")
def rms_norm_backward(fn, rng):
    C, eps = 6, 1e-6
    rms = RMSNorm(C, eps=eps, dtype="float64")
    rms.g[...] = randn(rng, C)
    x, dout = randn(rng, 2, 4, C) + 0.5, randn(rng, 2, 4, C)
    dx, dg = unpack(fn(dout.copy(), x.copy(), rms.g.copy(), eps), ("dx", "dg"))
    rms.forward(x)
    close(dx, rms.backward(dout), "dx")
    close(dg, rms.dg, "dg")


@exercise("07")
def attend_backward(fn, rng):
    B, H, T, S, D = 2, 2, 4, 5, 3
    q, k, v, dy = randn(rng, B, H, T, D), randn(rng, B, H, S, D), randn(rng, B, H, S, D), \
        randn(rng, B, H, T, D)
    for allowed in (None, attention_mask(np, T, S, True, offset=1)):
        _, att = attend(q, k, v, allowed)
        got = unpack(fn(dy.copy(), q.copy(), k.copy(), v.copy(), att.copy()), ("dq", "dk", "dv"))
        want = reference_attend_backward(dy, q, k, v, att)
        numeric = numeric_vjp(lambda: attend(q, k, v, allowed)[0], {"q": q, "k": k, "v": v}, dy)
        label = "no mask" if allowed is None else "causal mask"
        for name, g, w in zip("qkv", got, want):
            slip = [(w * np.sqrt(D), "the 1/sqrt(D) of the scores is missing from the way back: "
                     "dscores = (the softmax's backward) / sqrt(D)")] if name in "qk" else ()
            close(g, w, f"d{name} ({label})", hints=slip)
            grad_close(g, numeric[name], f"d{name} ({label})")
