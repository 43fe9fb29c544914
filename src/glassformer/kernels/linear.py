"""Linear's backward on CuPy: cuBLAS takes the GEMMs whole; what the overlay adds is the precision.

Laid over layers.linear.linear_backward. Under fp16, dout goes to the GEMMs in the forward output's
dtype (float16) and the bias gradient is summed in float32: the same lines as the CPU overlay's
(kernels/cpu/linear.py), which are array-module agnostic.
"""
from .. import backend
from .cpu.linear import linear_backward_cpu


@backend.accelerates("linear_backward")
def linear_backward_cuda(dout, x, W, dW, db):
    """linear_backward() with dout in y's dtype and db summed in its own: kernels/cpu/linear.py."""
    return linear_backward_cpu(dout, x, W, dW, db)
