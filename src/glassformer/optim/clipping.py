"""The global gradient norm, and clipping every gradient to a maximum norm."""
from ..backend import accelerated, array_module, upcast


@accelerated
def sum_squares(g):
    """sum(g * g) as a 0-d value: float32 for 16-bit gradients (their squares overflow float16)."""
    g = upcast(g)
    return (g * g).sum()


@accelerated
def grad_norm(params):
    """The global L2 norm of the gradients, a 0-d array in their precision (no host sync)."""
    xp = array_module(params[0][1])
    return xp.sqrt(sum(sum_squares(g) for _, g in params))


def clip_grad_norm(params, max_norm):
    """Scale every gradient so their global L2 norm is at most max_norm; returns the norm before."""
    xp = array_module(params[0][1])
    total = grad_norm(params)
    scale = xp.minimum(1.0, max_norm / (total + 1e-6))
    for _, g in params:
        g *= scale.astype(g.dtype)
    return total
