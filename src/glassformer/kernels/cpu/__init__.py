"""The CPU overlay: NumPy kernels laid over the reference functions of layers/ and optim/.

The reference is the textbook; these compute the same numbers faster on a CPU, and hold the 16-bit
handling of the fp16 policy: BLAS products for row sums and row dots (reduce.py), chains of in-place
passes over L2-sized tiles (tiling.py: GELU through the sigmoid identity), Adam over cache-sized
pieces, statistics, softmax and the loss in float32 for float16 data, Linear's gradient in its
output's dtype. Each module registers its kernels with @backend.accelerates("<name>", device="cpu");
backend loads this package by name on the first NumPy array that reaches an @accelerated function
while the overlay is on (the default; GLASSFORMER_REFERENCE=1 or backend.use_overlay(False) turn it
off). tests/gpu/test_kernels.py compares every kernel with its reference. compiled.py lays numba's
loops (jit.py, the `fast` extra) over LayerNorm, GELU, the softmax, attention and AdamW for big float32
and float64 arrays; tests/unit/kernels/cpu/test_compiled.py compares them with the references.
decode.py runs a GPT-2-shaped model's one-token decoding step in compiled calls (test_decode.py).
"""
from . import activations, attention, linear, loss, norm, optim  # noqa: F401  each registers its kernels
from . import compiled  # noqa: F401,E402  numba's loops over some of the above, where installed
from . import decode  # noqa: F401,E402  last: one compiled decoding step (uses compiled)

__all__ = ["activations", "attention", "compiled", "decode", "linear", "loss", "norm", "optim"]
