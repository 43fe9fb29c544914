"""GELU through the sigmoid identity on L2-sized tiles, and the softmax through BLAS row sums.

Laid over layers.activations (gelu_forward, gelu_backward, softmax, softmax_backward); 16-bit
input to the softmax is computed in float32.
"""
import numpy as np

from ... import backend
from ...backend import array_module, upcast
from .reduce import axis_dot, axis_sum
from .tiling import flat_tiles

GELU_C = float(np.sqrt(2.0 / np.pi))                      # a Python float keeps float32 arrays float32


@backend.accelerates("softmax", device="cpu")
def softmax_cpu(z, axis=-1):
    """softmax(): exp in place, the row sums as e @ ones; 16-bit z in float32."""
    xp = array_module(z)
    z = upcast(z)                                           # 16-bit in: exp and sum in float32
    e = z - z.max(axis=axis, keepdims=True)
    xp.exp(e, out=e)                                        # in place: no second temporary
    e /= axis_sum(e, axis)                                  # over the last axis: e @ ones
    return e


@backend.accelerates("softmax_backward", device="cpu")
def softmax_backward_cpu(dprobs, probs, axis=-1):
    """softmax_backward(): <dprobs, probs> as one dot product per row, no product array."""
    dz = dprobs - axis_dot(dprobs, probs, axis)
    dz *= probs
    return dz


@backend.accelerates("gelu_forward", device="cpu")
def gelu_forward_cpu(x):
    """gelu_forward(): (out, cache = (x, s)), out = x * s with s = sigmoid(2u).

    0.5 (1 + tanh u) = sigmoid(2u) = 1 / (1 + exp(-2u)): one exp is cheaper than a tanh.
    gelu_forward_tile does the passes, one cache-sized tile at a time (tiling.py).
    """
    xp = array_module(x)
    x1 = x.reshape(-1)
    out, s = xp.empty_like(x1), xp.empty_like(x1)
    for tile in flat_tiles(x1):
        gelu_forward_tile(x1[tile], out[tile], s[tile])
    return out.reshape(x.shape), (x, s.reshape(x.shape))


def gelu_forward_tile(x, out, s):
    """out = x * s, s = sigmoid(2u), in place in s (no temporaries); exp(-2u) = inf gives s = 0."""
    xp = array_module(x)
    xp.multiply(x, x, out=s)
    s *= -2 * GELU_C * 0.044715
    s -= 2 * GELU_C
    s *= x                                                  # -2u = -2c (x + 0.044715 x^3)
    with np.errstate(over="ignore"):
        xp.exp(s, out=s)
    s += 1.0
    xp.divide(1.0, s, out=s)                                # s = sigmoid(2u) = 0.5 (1 + tanh u)
    xp.multiply(x, s, out=out)


@backend.accelerates("gelu_backward", device="cpu")
def gelu_backward_cpu(dout, cache):
    """gelu_backward() from gelu_forward_cpu's cache: dout * g'(x), g' tile by tile."""
    xp = array_module(dout)
    x, s = cache
    d1, x1, s1 = dout.reshape(-1), x.reshape(-1), s.reshape(-1)
    dx = xp.empty(x1.shape, xp.result_type(dout, x))       # mixed dtypes: NumPy's promotion
    g = dx if dx.dtype == x.dtype else xp.empty_like(x1)   # g'(x) in x's dtype
    tiles = flat_tiles(x1)
    r = xp.empty_like(g[tiles[0]])                          # scratch for 1 - s, one tile long
    for tile in tiles:
        g_tile = g[tile]
        gelu_backward_tile(x1[tile], s1[tile], g_tile, r[:g_tile.size])
        xp.multiply(d1[tile], g_tile, out=dx[tile])
    return dx.reshape(dout.shape)


def gelu_backward_tile(x, s, g, r):
    """g = d/dx [x sigmoid(2u)] = s + x s (1 - s) 2 du/dx, s = sigmoid(2u); r: scratch, in place."""
    xp = array_module(x)
    xp.multiply(x, x, out=g)
    g *= 2 * GELU_C * 3 * 0.044715
    g += 2 * GELU_C                                         # 2 du/dx = 2c (1 + 3 * 0.044715 x^2)
    g *= x
    g *= s
    xp.subtract(1.0, s, out=r)
    g *= r                                                  # sigmoid' = s (1 - s)
    g += s                                                  # dy/dx
