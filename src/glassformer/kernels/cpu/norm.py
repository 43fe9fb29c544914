"""LayerNorm's statistics as BLAS products and row dots; 16-bit input in float32.

Laid over layers.norm.layer_norm_forward / layer_norm_backward; the cache is the reference's
(x_hat, rstd).
"""
from ... import backend
from ...backend import array_module, upcast
from .reduce import column_sum, row_dot, row_mean


@backend.accelerates("layer_norm_forward", device="cpu")
def layer_norm_forward_cpu(x, gamma, beta, eps):
    """layer_norm_forward(): mean as x @ ones / C, variance as a row dot, x_hat in place."""
    xp = array_module(x)
    x = upcast(x)                                           # 16-bit in: statistics in float32
    mu = row_mean(x)                                        # (..., 1), as x @ ones / C
    x_hat = x - mu
    var = row_dot(x_hat, x_hat) / x.shape[-1]               # mean (x - mu)^2, no squared copy
    rstd = 1.0 / xp.sqrt(var + eps)                         # (..., 1)
    x_hat *= rstd                                           # (..., C), in place: x - mu is ours
    out = x_hat * gamma
    if beta is not None:
        out += beta
    return out, (x_hat, rstd)


@backend.accelerates("layer_norm_backward", device="cpu")
def layer_norm_backward_cpu(dout, cache, gamma, dgamma, dbeta):
    """layer_norm_backward(): column sums as ones @ d2, the row means as products with gamma."""
    x_hat, rstd = cache
    dout = upcast(dout)                                     # 16-bit in: sums in float32
    C = dout.shape[-1]
    d2, xh2 = dout.reshape(-1, C), x_hat.reshape(-1, C)
    dout_xhat = d2 * xh2
    dgamma += column_sum(dout_xhat)                         # forward: out = x_hat * gamma + beta
    if dbeta is not None:
        dbeta += column_sum(d2)
    # dx_hat = dout * gamma; x_hat = (x - mean) * rstd: subtract from dx_hat its row mean and its
    # projection on x_hat, whose means are dout @ gamma / C and (dout * x_hat) @ gamma / C
    mean_dx_hat = (d2 @ gamma).reshape(*dout.shape[:-1], 1) / C
    mean_dx_hat_x_hat = (dout_xhat @ gamma).reshape(*dout.shape[:-1], 1) / C
    dx = dout * gamma                                       # dx_hat
    dx -= mean_dx_hat
    dx -= x_hat * mean_dx_hat_x_hat
    dx *= rstd                                              # in place: dx is ours
    return dx
