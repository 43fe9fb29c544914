"""Element-wise activations (ReLU, GELU) and the softmax."""
import numpy as np

from .base import Layer
from ..backend import accelerated, array_module, upcast
from .reduce import axis_dot, axis_sum
from .tiling import flat_tiles


def softmax(z, axis=-1):
    """exp(z - max z) / sum exp(z - max z): subtracting the max keeps exp from overflowing."""
    xp = array_module(z)
    z = upcast(z)                                           # 16-bit in: exp and sum in float32
    e = z - z.max(axis=axis, keepdims=True)
    xp.exp(e, out=e)                                        # in place: no second temporary
    e /= axis_sum(e, axis)                                  # over the last axis: e @ ones
    return e


def softmax_backward(dprobs, probs, axis=-1):
    """dz = J^T dprobs = probs * (dprobs - <dprobs, probs>): the full Jacobian-vector product."""
    dz = dprobs - axis_dot(dprobs, probs, axis)             # <dprobs, probs> per row, no product array
    dz *= probs
    return dz


class Softmax(Layer):
    """Softmax over one axis (rows sum to 1)."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, z):
        self.probs = softmax(z, self.axis)
        return self.probs

    def backward(self, dout):
        return softmax_backward(dout, self.probs, self.axis)


class ReLU(Layer):
    """max(0, x); the gradient passes where x > 0."""

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


GELU_C = float(np.sqrt(2.0 / np.pi))                      # a Python float keeps float32 arrays float32


@accelerated
def gelu_forward(x):
    """0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3); returns (out, cache = (x, s)).

    Computed as x * s with s = sigmoid(2u) = 1 / (1 + exp(-2u)), the same number, since
    0.5 (1 + tanh u) = sigmoid(2u): one exp is cheaper than a tanh. gelu_forward_tile does the
    passes, one cache-sized tile at a time (layers/tiling.py).
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


@accelerated
def gelu_backward(dout, cache):
    """dx of gelu_forward: dout * g'(x), g' by gelu_backward_tile one cache-sized tile at a time."""
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


class GELU(Layer):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh form used by GPT-2."""

    def forward(self, x):
        y, self.cache = gelu_forward(x)
        return y

    def backward(self, dout):
        return gelu_backward(dout, self.cache)

    @property
    def x(self):
        """The input of the last forward."""
        return self.cache[0]

    @property
    def t(self):
        """tanh(u) of the last forward, 2 s - 1 (None where backward recomputes it)."""
        s = self.cache[1]
        return None if s is None else 2.0 * s - 1.0


ACTIVATIONS = {"relu": ReLU, "gelu": GELU}
