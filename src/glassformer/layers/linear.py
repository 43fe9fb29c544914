"""Linear: y = x @ W + b over the last axis."""
import numpy as np

from .base import Layer, new_param
from ..backend import array_module, matmul, to_compute


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
        self.dW = array_module(self.W).zeros_like(self.W)
        self.bias = bias
        if bias:
            self.b = new_param(np.zeros(d_out), dtype)
            self.db = array_module(self.b).zeros_like(self.b)

    def forward(self, x):                                   # x: (..., d_in)
        self.x = to_compute(x)                              # float16 under the fp16 policy, else x
        y = matmul(self.x.reshape(-1, x.shape[-1]), to_compute(self.W))   # one 2-D GEMM, not one per row
        if self.bias:
            y += self.b
        return y.reshape(*x.shape[:-1], -1)                 # (..., d_out)

    def backward(self, dout):                               # dout: (..., d_out)
        if self.x.dtype != self.W.dtype:                    # fp16 policy: float16 GEMMs
            return self.backward_mixed(dout)
        x2 = self.x.reshape(-1, self.x.shape[-1])
        d2 = dout.reshape(-1, dout.shape[-1])
        self.dW += x2.T @ d2                                # accumulate: tied weights, micro-batches
        if self.bias:
            self.db += d2.sum(axis=0)
        return (d2 @ self.W.T).reshape(self.x.shape)        # dx: (..., d_in)

    def backward_mixed(self, dout):
        """backward() with x cached in float16: float16 GEMMs, float32 sums into the float32 dW, db."""
        x2 = self.x.reshape(-1, self.x.shape[-1])
        d2 = to_compute(dout.reshape(-1, dout.shape[-1]))
        self.dW += matmul(x2.T, d2)
        if self.bias:
            self.db += d2.sum(axis=0, dtype=self.db.dtype)
        return matmul(d2, to_compute(self.W).T).reshape(self.x.shape)   # dx: float16

    def own_parameters(self):
        if self.bias:
            return {"W": (self.W, self.dW), "b": (self.b, self.db)}
        return {"W": (self.W, self.dW)}
