"""Lesson 3 exercises: LayerNorm, RMSNorm, the feed-forward network, the residual's gradient.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 03
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    """LayerNorm over the last axis (lesson 3, section 2).

    x: (..., C); gamma, beta: (C,). Return (x - mean) / sqrt(var + eps) * gamma + beta, with the mean
    and the (biased, divide-by-C) variance taken over the last axis of each row.
    """
    raise NotImplementedError


def rms_norm_forward(x, g, eps=1e-6):
    """RMSNorm over the last axis (lesson 3, section 3): LayerNorm without centring.

    x: (..., C); g: (C,). Return x / sqrt(mean(x^2) + eps) * g, the mean over the last axis.
    """
    raise NotImplementedError


def ffn_forward(x, W1, b1, W2, b2):
    """The position-wise feed-forward network with a ReLU (lesson 3, section 4).

    x: (B, T, C); W1: (C, F), b1: (F,); W2: (F, C), b2: (C,).
    Return relu(x W1 + b1) W2 + b2, of shape (B, T, C).
    """
    raise NotImplementedError


def residual_backward(dout, f_backward):
    """The gradient of a residual connection y = x + f(x) (lesson 3, section 1).

    dout: dL/dy; f_backward(d) returns the gradient through f alone (f's backward, already run
    forward on x). Return dL/dx: the straight path plus the path through f.
    """
    raise NotImplementedError
