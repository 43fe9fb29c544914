"""LayerNorm's statistics as BLAS products and row dots; 16-bit input in float32.

Laid over layers.norm.layer_norm_forward / layer_norm_backward; the cache is the reference's
(x_hat, rstd).
"""
from ... import backend
from ...backend import array_module, upcast
from .pool import over_rows
from .reduce import column_sum, row_dot, row_mean


@backend.accelerates("layer_norm_forward", device="cpu")
def layer_norm_forward_cpu(x, gamma, beta, eps):
    """layer_norm_forward(): mean as x @ ones / C, variance as a row dot, x_hat in place; rows over
    the pool."""
    xp = array_module(x)
    x = upcast(x)                                           # 16-bit in: statistics in float32
    C = x.shape[-1]
    x2 = x.reshape(-1, C)                                   # (N, C)
    x_hat = xp.empty_like(x2)
    rstd = xp.empty((x2.shape[0], 1), x2.dtype)
    out = xp.empty(x2.shape, xp.result_type(x2, gamma) if beta is None else
                   xp.result_type(x2, gamma, beta))

    def part(a, b):                                         # rows a:b, as one thread would do them
        xa, ha, ra = x2[a:b], x_hat[a:b], rstd[a:b]
        xp.subtract(xa, row_mean(xa), out=ha)               # mean as x @ ones / C
        var = row_dot(ha, ha) / C                           # mean (x - mu)^2, no squared copy
        xp.divide(1.0, xp.sqrt(var + eps), out=ra)          # (rows, 1)
        ha *= ra                                            # in place: x - mu is ours
        xp.multiply(ha, gamma, out=out[a:b])
        if beta is not None:
            out[a:b] += beta
    over_rows(part, *x2.shape, xp=xp)
    shape = x.shape
    return out.reshape(shape), (x_hat.reshape(shape), rstd.reshape(*shape[:-1], 1))


@backend.accelerates("layer_norm_backward", device="cpu")
def layer_norm_backward_cpu(dout, cache, gamma, dgamma, dbeta):
    """layer_norm_backward(): column sums as ones @ d2, the row means as products with gamma; the
    element-wise passes over the pool (the column sums stay whole: BLAS)."""
    x_hat, rstd = cache
    xp = array_module(x_hat)
    dout = upcast(dout)                                     # 16-bit in: sums in float32
    C = dout.shape[-1]
    d2, xh2, r2 = dout.reshape(-1, C), x_hat.reshape(-1, C), rstd.reshape(-1, 1)
    dout_xhat = xp.empty(d2.shape, xp.result_type(d2, xh2))
    over_rows(lambda a, b: xp.multiply(d2[a:b], xh2[a:b], out=dout_xhat[a:b]), *d2.shape, xp=xp)
    dgamma += column_sum(dout_xhat)                         # forward: out = x_hat * gamma + beta
    if dbeta is not None:
        dbeta += column_sum(d2)
    # dx_hat = dout * gamma; x_hat = (x - mean) * rstd: subtract from dx_hat its row mean and its
    # projection on x_hat, whose means are dout @ gamma / C and (dout * x_hat) @ gamma / C
    mean_dx_hat = (d2 @ gamma).reshape(-1, 1) / C
    mean_dx_hat_x_hat = (dout_xhat @ gamma).reshape(-1, 1) / C
    dx = xp.empty(d2.shape, xp.result_type(d2, gamma))

    def part(a, b):
        da = xp.multiply(d2[a:b], gamma, out=dx[a:b])       # dx_hat
        da -= mean_dx_hat[a:b]
        da -= xh2[a:b] * mean_dx_hat_x_hat[a:b]
        da *= r2[a:b]                                       # in place: dx is ours
    over_rows(part, *d2.shape, xp=xp)
    return dx.reshape(dout.shape)
