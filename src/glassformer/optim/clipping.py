"""The global gradient norm, and clipping every gradient to a maximum norm."""
from ..backend import accelerated, array_module, upcast

SHORT = 1 << 16                         # numbers: a float32 dot this long is as accurate as a pairwise sum


@accelerated
def sum_squares(g):
    """sum(g * g) as a 0-d value in g's own dtype (16-bit gradients in float32): float64 stays float64.

    Up to SHORT numbers (Adam's pieces) it is the dot product g . g, one BLAS pass that writes no
    squared copy (6x faster); a longer g keeps NumPy's pairwise sum, whose float32 error stays near
    1e-8 where BLAS's running dot drifts (2e-4 at 38M numbers, measured).
    """
    g = upcast(g).reshape(-1)
    if g.size <= SHORT:
        return g @ g
    return (g * g).sum()


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
