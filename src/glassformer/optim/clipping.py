"""The global gradient norm, and clipping every gradient to a maximum norm."""
from .. import backend
from ..backend import array_module


def grad_norm(params):
    """The global L2 norm of the gradients, a 0-d float32 array (no host sync)."""
    xp = array_module(params[0][1])
    fused = backend.fused("sum_squares", params[0][1])      # GPU: no squared copy of each gradient
    if fused is not None:
        return xp.sqrt(sum(fused(g) for _, g in params))
    return xp.sqrt(sum((g.astype(xp.float32, copy=False) ** 2).sum() for _, g in params))


def clip_grad_norm(params, max_norm):
    """Scale every gradient so their global L2 norm is at most max_norm; returns the norm before."""
    xp = array_module(params[0][1])
    total = grad_norm(params)
    scale = xp.minimum(1.0, max_norm / (total + 1e-6))
    for _, g in params:
        g *= scale.astype(g.dtype)
    return total
