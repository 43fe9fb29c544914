# ==================================================================================================
# SPOILER: the solutions of lesson 15's exercises (lessons/15-*.md: initialisation and dropout).
# Write your own in lessons/exercises/15_init_dropout.py first, and check them with
#     python -m glassformer.lessons check 15
# Read this file after, to compare.
# ==================================================================================================
"""Lesson 15 exercises: Xavier and He initialisation, inverted dropout, train and eval mode."""
import numpy as np


def xavier_uniform(d_in, d_out, rng):
    """A Xavier/Glorot-uniform weight matrix (Glorot & Bengio 2010; lesson 15, initialisation).

    Return W (d_in, d_out) drawn with rng.uniform from [-a, a], a = sqrt(6 / (d_in + d_out)), so that
    Var(W) = a^2 / 3 = 2 / (d_in + d_out): the variance of the signal is kept both forward and backward.
    """
    a = np.sqrt(6.0 / (d_in + d_out))
    return rng.uniform(-a, a, (d_in, d_out))


def he_normal(d_in, d_out, rng):
    """A He/Kaiming-normal weight matrix for ReLU layers (He et al. 2015; lesson 15, initialisation).

    Return W (d_in, d_out) drawn with rng.normal, mean 0 and std sqrt(2 / d_in): a ReLU zeroes half of
    its inputs, so the variance is doubled to keep the activations' scale through depth.
    """
    return rng.normal(0.0, np.sqrt(2.0 / d_in), (d_in, d_out))


def dropout_forward(x, p, rng, training=True):
    """Inverted dropout (Srivastava et al. 2014; lesson 15, dropout).

    x: any shape; p: the drop probability, 0 <= p < 1; rng: a NumPy Generator (draw with rng.random).
    Training: keep each entry with probability 1 - p and scale the kept ones by 1 / (1 - p), so the
    expected output equals x; return (out, mask) with mask = keep / (1 - p) (0 or 1 / (1 - p) per
    entry) and out = x * mask. Eval mode (training=False) or p = 0: return (x, None), x unchanged.
    """
    if not training or p == 0:
        return x, None
    mask = (rng.random(x.shape) >= p) / (1.0 - p)
    return x * mask, mask


def dropout_backward(dout, mask):
    """The backward of dropout_forward (lesson 15, dropout).

    dout: the gradient of out; mask: what dropout_forward returned (None in eval mode).
    Return dx: the gradient flows only through the kept entries, with the same 1 / (1 - p) scale.
    """
    return dout if mask is None else dout * mask
