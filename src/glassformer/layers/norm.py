"""Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019)."""
import numpy as np

from .base import Layer, new_grad, new_param
from ..backend import accelerated, array_module


@accelerated
def layer_norm_forward(x, gamma, beta, eps):
    """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis (beta None: no bias); (out, cache)."""
    xp = array_module(x)
    mu = x.mean(axis=-1, keepdims=True)                     # (..., 1)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)      # (..., 1)
    rstd = 1.0 / xp.sqrt(var + eps)                         # (..., 1)
    x_hat = (x - mu) * rstd                                 # (..., C)
    out = x_hat * gamma
    if beta is not None:
        out = out + beta
    return out, (x_hat, rstd)


@accelerated
def layer_norm_backward(dout, cache, gamma, dgamma, dbeta):
    """dx of layer_norm_forward; adds the column sums into dgamma and dbeta (None: no bias)."""
    x_hat, rstd = cache
    C = dout.shape[-1]
    dgamma += (dout * x_hat).reshape(-1, C).sum(axis=0)    # forward: out = x_hat * gamma + beta
    if dbeta is not None:
        dbeta += dout.reshape(-1, C).sum(axis=0)
    # x_hat = (x - mean) * rstd: from dx_hat remove its row mean and its projection on x_hat
    dx_hat = dout * gamma
    mean_dx_hat = dx_hat.mean(axis=-1, keepdims=True)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=-1, keepdims=True)
    return (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat) * rstd


class LayerNorm(Layer):
    """out = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis; bias=False: no beta."""

    def __init__(self, d_model, eps=1e-5, dtype="float32", bias=True):
        self.eps = eps
        self.gamma = new_param(np.ones(d_model), dtype)
        self.dgamma = new_grad(self.gamma)
        self.beta = self.dbeta = None
        if bias:
            self.beta = new_param(np.zeros(d_model), dtype)
            self.dbeta = new_grad(self.beta)

    def forward(self, x):                                   # x: (..., C)
        y, self.cache = layer_norm_forward(x, self.gamma, self.beta, self.eps)
        return y

    def backward(self, dout):                               # dout: (..., C)
        return layer_norm_backward(dout, self.cache, self.gamma, self.dgamma, self.dbeta)

    @property
    def x_hat(self):
        """The normalised input of the last forward, (..., C), from the reference's cache."""
        x_hat, _ = self.cache
        return x_hat

    @property
    def rstd(self):
        """1 / sqrt(var + eps) of the last forward, (..., 1), from the reference's cache."""
        _, rstd = self.cache
        return rstd

    def own_parameters(self):
        if self.beta is None:
            return {"gamma": (self.gamma, self.dgamma)}
        return {"gamma": (self.gamma, self.dgamma), "beta": (self.beta, self.dbeta)}


class RMSNorm(Layer):
    """out = x / sqrt(mean(x^2) + eps) * g (Zhang & Sennrich 2019): LayerNorm without centring."""

    def __init__(self, d_model, eps=1e-6, dtype="float32"):
        self.eps = eps
        self.g = new_param(np.ones(d_model), dtype)
        self.dg = new_grad(self.g)

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
