"""Element-wise activations (ReLU, GELU) and the softmax."""
import numpy as np

from .base import Layer
from ..backend import accelerated, array_module, upcast
from .reduce import axis_sum


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
    dz = dprobs - axis_sum(dprobs * probs, axis)
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
    0.5 (1 + tanh u) = sigmoid(2u): one exp is cheaper than a tanh. The steps run in place in one
    buffer (no temporaries); exp(-2u) overflows to inf for very negative x, where s = 1/inf = 0.
    """
    xp = array_module(x)
    s = x * x
    s *= -2 * GELU_C * 0.044715
    s -= 2 * GELU_C
    s *= x                                                  # -2u = -2c (x + 0.044715 x^3)
    with np.errstate(over="ignore"):
        xp.exp(s, out=s)
    s += 1.0
    xp.divide(1.0, s, out=s)                                # s = sigmoid(2u) = 0.5 (1 + tanh u)
    return x * s, (x, s)


@accelerated
def gelu_backward(dout, cache):
    """dx of gelu_forward: d/dx [x sigmoid(2u)] = s + x s (1 - s) 2 du/dx, s = sigmoid(2u)."""
    x, s = cache
    g = x * x
    g *= 2 * GELU_C * 3 * 0.044715
    g += 2 * GELU_C                                         # 2 du/dx = 2c (1 + 3 * 0.044715 x^2)
    g *= x
    g *= s
    g *= 1.0 - s                                            # sigmoid' = s (1 - s)
    g += s                                                  # dy/dx, in place in one buffer
    if g.dtype == dout.dtype:
        g *= dout
        return g
    return dout * g                                         # mixed dtypes: NumPy's promotion


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
