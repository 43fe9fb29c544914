"""GELU (tanh form) on CuPy: one elementwise pass each way; backward recomputes tanh from x.

Laid over layers.activations.gelu_forward / gelu_backward; tested against them.
"""
import math

from .. import backend
from .common import accum_name, compiled, cupy

GELU_C = math.sqrt(2.0 / math.pi)


def gelu_kernels(accum):
    """(forward, backward) ElementwiseKernels computing in the C type accum ("float" or "double")."""
    def build(cp):
        c, k = f"(A_t){GELU_C!r}", "(A_t)0.044715"
        pre = f"typedef {accum} A_t;\n"
        forward = cp.ElementwiseKernel(
            "S x", "S y",
            f"A_t v = (A_t)x; A_t t = tanh({c} * (v + {k} * v * v * v));"
            f" y = (S)((A_t)0.5 * v * ((A_t)1 + t));",
            f"glassformer_gelu_forward_{accum}", preamble=pre)
        backward = cp.ElementwiseKernel(
            "D dout, S x", "O dx",
            f"A_t v = (A_t)x; A_t t = tanh({c} * (v + {k} * v * v * v));"
            f" A_t du = {c} * ((A_t)1 + (A_t)3 * {k} * v * v);"
            f" dx = (O)((A_t)dout * ((A_t)0.5 * ((A_t)1 + t)"
            f" + (A_t)0.5 * v * ((A_t)1 - t * t) * du));",
            f"glassformer_gelu_backward_{accum}", preamble=pre)
        return forward, backward
    return compiled(("gelu", accum), build)


@backend.accelerates("gelu_forward")
def gelu_forward_cuda(x):
    """(y, cache = (x, None)): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); tanh is not kept."""
    forward, _ = gelu_kernels(accum_name(x.dtype))
    return forward(x), (x, None)


@backend.accelerates("gelu_backward")
def gelu_backward_cuda(dout, cache):
    """dx of gelu_forward_cuda, from x alone."""
    x, _ = cache
    _, backward = gelu_kernels(accum_name(x.dtype))
    dx = cupy().empty(x.shape, cupy().result_type(dout, x))
    return backward(dout, x, dx)
