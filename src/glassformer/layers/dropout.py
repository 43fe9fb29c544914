"""Dropout (Srivastava et al. 2014), inverted: scale at train time, identity at eval."""
from .base import Layer
from ..backend import array_module, random_uniform


class Dropout(Layer):
    """Zeroes each element with probability p while training and scales the rest by 1/(1-p)."""

    def __init__(self, p, rng):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p} must be in [0, 1)")
        self.p = p
        self.rng = rng                                      # NumPy Generator: reproducible masks
        self.mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        xp = array_module(x)
        keep = random_uniform(self.rng, x.shape, x) >= self.p   # rng.random on the CPU (reproducible);
                                                                # on a GPU, drawn there
        self.mask = xp.asarray(keep, dtype=x.dtype) / (1.0 - self.p)
        return x * self.mask

    def backward(self, dout):
        return dout if self.mask is None else dout * self.mask
