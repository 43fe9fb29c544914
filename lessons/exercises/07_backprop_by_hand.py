"""Lesson 7 exercises: the backward pass of every layer, as vector-Jacobian products.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 07
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np

GELU_C = np.sqrt(2.0 / np.pi)


def linear_backward(x, W, dout):
    """The backward of y = x @ W + b (lesson 7, section 2).

    x: (..., d_in) any number of leading axes; W: (d_in, d_out); dout: (..., d_out).
    Return (dx, dW, db): dx like x, dW (d_in, d_out) and db (d_out,) summed over every leading axis.
    """
    raise NotImplementedError


def gelu_backward(x, dout):
    """The backward of GELU's tanh form (lesson 7, section 3).

    Forward: out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). x, dout: same shape.
    Return dx = dout * d out / dx (product rule; d tanh(u)/du = 1 - tanh(u)^2).
    """
    raise NotImplementedError


def softmax_backward(dprobs, probs):
    """The backward of probs = softmax(z) over the last axis (lesson 7, section 4).

    dprobs, probs: (..., V). Return dz (..., V) = J^T dprobs without building the Jacobian:
    dz = probs * (dprobs - sum(dprobs * probs)), the sum over the last axis.
    """
    raise NotImplementedError


def layer_norm_backward(dout, x, gamma, eps=1e-5):
    """The backward of LayerNorm out = x_hat * gamma + beta, x_hat = (x - mean) / sqrt(var + eps)
    (lesson 7, section 5).

    dout, x: (..., C); gamma: (C,). Return (dx, dgamma, dbeta): dx like x; dgamma, dbeta (C,) summed
    over every leading axis. With dx_hat = dout * gamma and rstd = 1 / sqrt(var + eps):
    dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)), the means over the last axis.
    """
    raise NotImplementedError


def rms_norm_backward(dout, x, g, eps=1e-6):
    """The backward of RMSNorm out = x r g, r = (mean(x^2) + eps)^(-1/2) (lesson 7, section 5,
    without the mean).

    dout, x: (..., C); g: (C,). Return (dx, dg). LayerNorm's derivation without the mean terms:
    dx = r * (dx_hat - x_hat * mean(dx_hat * x_hat)) with x_hat = x r and dx_hat = dout * g.
    """
    raise NotImplementedError


def attend_backward(dy, q, k, v, att):
    """The backward of attention y = att @ v, att = softmax(q k^T / sqrt(D)) (lesson 7, section 6).

    dy: (B, H, T, D); q: (B, H, T, D); k, v: (B, H, S, D); att: (B, H, T, S) the forward's weights
    (0 on masked pairs). Return (dq, dk, dv). Read the forward backwards: dv = att^T dy,
    datt = dy v^T, then the softmax's backward (with its subtraction) gives dscores; divide by
    sqrt(D), then dq = dscores k and dk = dscores^T q.
    """
    raise NotImplementedError
