"""Research layers with exact backward: RMSNorm, NoNorm and the bilinear MLP."""
import numpy as np

from ..backend import array_module
from ..layers.base import Layer, new_param
from ..layers.linear import Linear
from ..layers.norm import LayerNorm


class RMSNorm(Layer):
    """out = x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019): LayerNorm without centring."""

    def __init__(self, d_model, eps=1e-6, dtype="float32"):
        self.eps = eps
        self.g = new_param(np.ones(d_model), dtype)
        self.dg = array_module(self.g).zeros_like(self.g)

    def forward(self, x):                                   # x: (..., C)
        xp = array_module(x)
        self.r = 1.0 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps)   # (..., 1)
        self.x_hat = x * self.r                             # (..., C)
        return self.x_hat * self.g

    def backward(self, dout):                               # dout: (..., C)
        C = dout.shape[-1]
        self.dg += (dout * self.x_hat).reshape(-1, C).sum(axis=0)   # out = x_hat * g
        dx_hat = dout * self.g
        # x_hat = x * r with r = mean(x^2)^-1/2: remove the component of dx_hat along x_hat
        return self.r * (dx_hat - self.x_hat * (dx_hat * self.x_hat).mean(axis=-1, keepdims=True))

    def own_parameters(self):
        return {"g": (self.g, self.dg)}


class NoNorm(Layer):
    """The identity, standing where a norm would be (norm="none" in a toy model)."""

    def forward(self, x):
        return x

    def backward(self, dout):
        return dout


class Bilinear(Layer):
    """Bilinear MLP: out = ((x W1) * (x W2)) W_out, no gate nonlinearity (Pearce et al. 2024)."""

    def __init__(self, d_model, d_hidden, rng, bias=True, init="normal", out_init="zeros",
                 dtype="float32"):
        self.w1 = Linear(d_model, d_hidden, rng, bias=bias, init=init, dtype=dtype)
        self.w2 = Linear(d_model, d_hidden, rng, bias=bias, init=init, dtype=dtype)
        self.w_out = Linear(d_hidden, d_model, rng, bias=bias, init=out_init, dtype=dtype)

    def forward(self, x):                                   # x: (B, T, C)
        self.a, self.b = self.w1.forward(x), self.w2.forward(x)   # (B, T, d_hidden) each
        return self.w_out.forward(self.a * self.b)          # (B, T, C)

    def backward(self, dout):
        dh = self.w_out.backward(dout)                      # h = a * b: product rule
        return self.w1.backward(dh * self.b) + self.w2.backward(dh * self.a)

    def children(self):
        return {"w1": self.w1, "w2": self.w2, "w_out": self.w_out}


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm, "none": NoNorm}


def make_norm(kind, d_model, dtype="float32"):
    """A LayerNorm, RMSNorm or NoNorm by name."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}: use one of {tuple(NORMS)}")
    return NoNorm() if kind == "none" else NORMS[kind](d_model, dtype=dtype)
