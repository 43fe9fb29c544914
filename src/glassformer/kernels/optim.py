"""Optimizer kernels on CuPy: Adam/AdamW in one pass per parameter, the sum of squares of a gradient.

Laid over optim.optimizers.adam_step and optim.optimizers.sum_squares; tested against them.
"""
import numpy as np

from .. import backend
from .common import accum_name, compiled, device_scalar

ADAM = """
// hyper-parameters and bias corrections in double, rounded once: as the host does
double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
A_t step = (A_t)(lr * sqrt(bc2) / bc1), eps_hat = (A_t)(eps * sqrt(bc2));
A_t gf = (A_t)g;
A_t pf = (A_t)p;
if (wd != 0) {
    if (decoupled) pf *= (A_t)(1.0 - lr * wd); else gf += (A_t)wd * pf;
}
A_t mf = (A_t)b1 * (A_t)m + (A_t)(1.0 - b1) * gf;
A_t vf = (A_t)b2 * (A_t)v + (A_t)(1.0 - b2) * (gf * gf);
p = (T)(pf - step * mf / (sqrt(vf) + eps_hat));
m = (T)mf;
v = (T)vf;
"""


@backend.accelerates("adam_step")
def adam_step_cuda(params, ms, vs, t, settings):
    """adam_step() as one kernel per parameter; t may be a 0-d device array (the loss scaler's)."""
    lr, b1, b2, eps, decoupled, weight_decays = settings
    t = t + 1
    for (p, g), m, v, wd in zip(params, ms, vs, weight_decays):
        adam_update(p, g, m, v, lr, b1, b2, eps, wd, decoupled, t)
    return t


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, t):
    """One Adam/AdamW step of p, m, v in place, in one pass; t (bias correction) may be a 0-d device
    array (the loss scaler's count, kept on the device)."""
    accum = accum_name(p.dtype)
    kernel = compiled(("adam", accum), lambda cp: cp.ElementwiseKernel(
        "T g, float64 lr, float64 b1, float64 b2, float64 eps, float64 wd, bool decoupled,"
        " float32 t", "T p, T m, T v",
        ADAM, f"glassformer_adam_{accum}", preamble=f"typedef {accum} A_t;"))
    f64 = np.float64
    kernel(g, f64(lr), f64(beta1), f64(beta2), f64(eps), f64(weight_decay), bool(decoupled),
           device_scalar(t, np.float32), p, m, v)


@backend.accelerates("sum_squares")
def sum_squares_cuda(g):
    """sum(g^2) as a 0-d array without a squared copy of g: float64 for float64 g, else float32."""
    accum = accum_name(g.dtype)
    out = "float64" if accum == "double" else "float32"    # CuPy reads parameter types as NumPy's names
    kernel = compiled(("sum_squares", accum), lambda cp: cp.ReductionKernel(
        "T x", f"{out} y", f"({accum})x * ({accum})x", "a + b", "y = a", "0",
        f"glassformer_sum_squares_{accum}"))
    return kernel(g)
