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

    dprobs, probs: (..., V). Return dz (..., V) = J^T dprobs. Start from the Jacobian of one row,
    d probs_i / d z_j = probs_i (delta_ij - probs_j), and dz_j = sum_i dprobs_i d probs_i / d z_j;
    then write the sum with products and one sum over the last axis, never building the (V, V) matrix.
    """
    raise NotImplementedError


def layer_norm_backward(dout, x, gamma, eps=1e-5):
    """The backward of LayerNorm out = x_hat * gamma + beta, x_hat = (x - mean) / sqrt(var + eps)
    (lesson 7, section 5).

    dout, x: (..., C); gamma: (C,). Return (dx, dgamma, dbeta): dx like x; dgamma, dbeta (C,) summed
    over every leading axis. Start from dx_hat = dout * gamma, and x_hat = (x - mean) * rstd with
    rstd = (var + eps)^(-1/2), var = mean((x - mean)^2), all over the last axis: x reaches x_hat three
    ways, directly, through the mean and through var (d var / d x_j = 2 (x_j - mean) / C). Add the three.
    """
    raise NotImplementedError


def rms_norm_backward(dout, x, g, eps=1e-6):
    """The backward of RMSNorm out = x r g, r = (mean(x^2) + eps)^(-1/2) (lesson 7, section 5;
    lesson 3, section 3 derives it).

    dout, x: (..., C); g: (C,). Return (dx, dg). Start from x_hat = x r and dx_hat = dout * g: x reaches
    x_hat directly and through r, with d r / d x_j = -r^3 x_j / C (C the size of the last axis).
    """
    raise NotImplementedError


def attend_backward(dy, q, k, v, att):
    """The backward of attention y = att @ v, att = softmax(q k^T / sqrt(D)) (lesson 7, section 6).

    dy: (B, H, T, D); q: (B, H, T, D); k, v: (B, H, S, D); att: (B, H, T, S) the forward's weights
    (0 on masked pairs). Return (dq, dk, dv). Start from the forward, line by line:
    scores = q k^T / sqrt(D), att = softmax(scores) over the last axis, y = att v. Undo the lines in
    reverse, each one's backward as the matrix products of linear_backward and softmax_backward above.
    """
    raise NotImplementedError
