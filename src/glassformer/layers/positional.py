"""Positional information added to the token embeddings: sinusoidal (fixed) or learned."""
import numpy as np

from .base import Layer, new_grad, new_param
from ..backend import array_module


def sinusoidal_table(max_len, d_model):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...) (Vaswani et al. 2017)."""
    pos = np.arange(max_len)[:, None]                       # (T, 1)
    div = np.exp(-np.log(10000.0) * np.arange(0, d_model, 2) / d_model)   # (C/2,)
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(pos * div)
    table[:, 1::2] = np.cos(pos * div[: d_model // 2])
    return table


class SinusoidalPositionalEncoding(Layer):
    """x + PE[start:start+T]; fixed, no parameters, so the gradient passes straight through."""

    def __init__(self, max_len, d_model):
        self.max_len = max_len
        self.table = sinusoidal_table(max_len, d_model)     # NumPy, float64; cast per input below
        self._cache = {}

    def _table_like(self, x):
        xp = array_module(x)
        key = (xp.__name__, str(x.dtype))
        if key not in self._cache:
            self._cache[key] = xp.asarray(self.table, dtype=x.dtype)
        return self._cache[key]

    def forward(self, x, start=0):                          # x: (B, T, C)
        T = x.shape[1]
        if start + T > self.max_len:
            raise ValueError(f"sequence of {start + T} tokens is longer than max_len={self.max_len}")
        return x + self._table_like(x)[start:start + T]

    def backward(self, dout):
        return dout


class LearnedPositionalEmbedding(Layer):
    """x + P[start:start+T] with P learned (GPT-2 style)."""

    def __init__(self, max_len, d_model, rng, std=0.02, dtype="float32"):
        self.max_len = max_len
        self.P = new_param(rng.normal(0.0, std, (max_len, d_model)), dtype)
        self.dP = new_grad(self.P)

    def forward(self, x, start=0):                          # x: (B, T, C)
        T = x.shape[1]
        if start + T > self.max_len:
            raise ValueError(f"sequence of {start + T} tokens is longer than max_len={self.max_len}")
        self.span = (start, start + T)
        return x + self.P[start:start + T]

    def backward(self, dout):                               # dout: (B, T, C)
        a, b = self.span
        self.dP[a:b] += dout.sum(axis=0)
        return dout

    def own_parameters(self):
        return {"P": (self.P, self.dP)}
