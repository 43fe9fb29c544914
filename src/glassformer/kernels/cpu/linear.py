"""Linear's backward with the gradient in the dtype of the forward's output (float16 under fp16).

Laid over layers.linear.linear_backward.
"""
from ... import backend
from ...backend import matmul
from ...precision import product_dtype


@backend.accelerates("linear_backward", device="cpu")
def linear_backward_cpu(dout, x, W, dW, db):
    """linear_backward(): dy cast to y's dtype first, the bias gradient summed in db's dtype."""
    x2 = x.reshape(-1, x.shape[-1])
    d2 = dout.reshape(-1, dout.shape[-1]).astype(product_dtype(x.dtype, W.dtype), copy=False)
    dW += matmul(x2.T, d2)                                  # accumulate: tied weights, micro-batches
    if db is not None:
        db += d2.sum(axis=0, dtype=db.dtype)
    return matmul(d2, W.T).reshape(x.shape)                 # dx: (..., d_in)
