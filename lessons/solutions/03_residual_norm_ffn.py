# ==================================================================================================
# SPOILER: the solutions of lesson 3's exercises (lessons/03-residual-norm-ffn.md).
# Write your own in lessons/exercises/03_residual_norm_ffn.py first, and check them with
#     python -m glassformer.lessons check 03
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 3 exercises: LayerNorm, RMSNorm, the feed-forward network, the residual's gradient."""
import numpy as np


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """LayerNorm over the last axis (lesson 3, section 2).

    x: (..., C); gamma, beta: (C,). Return (x - mean) / sqrt(var + eps) * gamma + beta, with the mean
    and the (biased, divide-by-C) variance taken over the last axis of each row.
    """
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def rms_norm_forward(x, g, eps=1e-6):
    """RMSNorm over the last axis (lesson 3, section 3): LayerNorm without centring.

    x: (..., C); g: (C,). Return x / sqrt(mean(x^2) + eps) * g, the mean over the last axis.
    """
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * g


def ffn_forward(x, W1, b1, W2, b2):
    """The position-wise feed-forward network with a ReLU (lesson 3, section 4).

    x: (B, T, C); W1: (C, F), b1: (F,); W2: (F, C), b2: (C,).
    Return relu(x W1 + b1) W2 + b2, of shape (B, T, C).
    """
    return np.maximum(x @ W1 + b1, 0.0) @ W2 + b2


def residual_backward(dout, f_backward):
    """The gradient of a residual connection y = x + f(x) (lesson 3, section 1).

    dout: dL/dy; f_backward(d) returns the gradient through f alone (f's backward, already run
    forward on x). Return dL/dx: the straight path plus the path through f.
    """
    return dout + f_backward(dout)
