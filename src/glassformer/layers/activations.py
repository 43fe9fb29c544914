"""Element-wise activations (ReLU, GELU) and the softmax."""
import numpy as np

from .base import Layer
from ..backend import accelerated, array_module


@accelerated
def softmax(z, axis=-1):
    """exp(z - max z) / sum exp(z - max z): subtracting the max keeps exp from overflowing."""
    xp = array_module(z)
    e = xp.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@accelerated
def softmax_backward(dprobs, probs, axis=-1):
    """dz = J^T dprobs = probs * (dprobs - <dprobs, probs>): the full Jacobian-vector product."""
    return probs * (dprobs - (dprobs * probs).sum(axis=axis, keepdims=True))


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
    """0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3); returns (out, cache = (x, tanh u))."""
    xp = array_module(x)
    t = xp.tanh(GELU_C * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1.0 + t), (x, t)


@accelerated
def gelu_backward(dout, cache):
    """dx = dout * d/dx [0.5 x (1 + tanh u)] = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) du/dx)."""
    x, t = cache
    du = GELU_C * (1.0 + 3 * 0.044715 * x ** 2)            # du/dx
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


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
        """tanh(u) of the last forward, recomputed from x (each overlay caches what it likes)."""
        x = self.x
        return array_module(x).tanh(GELU_C * (x + 0.044715 * x ** 3))


ACTIVATIONS = {"relu": ReLU, "gelu": GELU}
