"""Linear: y = x @ W + b over the last axis."""
import numpy as np

from .base import Layer, new_grad, new_param
from ..backend import accelerated, matmul


@accelerated
def linear_backward(dout, x, W, dW, db):
    """dx of y = x @ W + b; adds x^T dout into dW and the column sums of dout into db (None: no bias)."""
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
    dW += matmul(x2.T, d2)                                  # accumulate: tied weights, micro-batches
    if db is not None:
        db += d2.sum(axis=0)
    return matmul(d2, W.T).reshape(x.shape)                 # dx: (..., d_in)


class Linear(Layer):
    """y = x @ W + b; Xavier-uniform init by default, or normal(0, std)."""

    def __init__(self, d_in, d_out, rng, bias=True, init="xavier", std=0.02, dtype="float32"):
        if init == "xavier":
            limit = np.sqrt(6.0 / (d_in + d_out))
            W = rng.uniform(-limit, limit, (d_in, d_out))
        elif init == "normal":
            W = rng.normal(0.0, std, (d_in, d_out))
        elif init == "zeros":
            W = np.zeros((d_in, d_out))
        else:
            raise ValueError(f"unknown init {init!r}")
        self.W = new_param(W, dtype)
        self.dW = new_grad(self.W)
        self.bias = bias
        if bias:
            self.b = new_param(np.zeros(d_out), dtype)
            self.db = new_grad(self.b)

    def forward(self, x):                                   # x: (..., d_in)
        self.x = x
        y = matmul(x.reshape(-1, x.shape[-1]), self.W)      # one 2-D GEMM, not one per row
        if self.bias:
            y += self.b
        return y.reshape(*x.shape[:-1], -1)                 # (..., d_out)

    def backward(self, dout):                               # dout: (..., d_out)
        return linear_backward(dout, self.x, self.W, self.dW, self.db if self.bias else None)

    def own_parameters(self):
        if self.bias:
            return {"W": (self.W, self.dW), "b": (self.b, self.db)}
        return {"W": (self.W, self.dW)}
