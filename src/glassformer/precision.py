"""Precision policies (fp32, tf32, fp16 mixed precision) and the matmul and upcast helpers that apply them.

fp32: every array float32. tf32: the same arrays, but cuBLAS may round matmul inputs to TF32 (a 10-bit
mantissa) on Ampere and newer GPUs. fp16 (Micikevicius et al. 2018): matmul() casts float32 operands to
float16 (float32 accumulation inside cuBLAS) while master weights and gradients stay float32; the
overlays (kernels/ on CuPy, kernels/cpu/ on NumPy) upcast() softmax, LayerNorm and cross-entropy to
float32, the layers/ reference does not; the residual stream stays float32; the Trainer scales the
loss (optim.LossScaler) so that small float16 gradients do not flush to zero.

This module imports nothing of the package but errors: backend listens for policy changes (TF32) through
on_change(), so the two never import each other.
"""
import contextlib
from dataclasses import dataclass

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class Policy:
    """What a precision mode changes: the matmul input dtype, TF32 in cuBLAS, loss scaling."""
    name: str
    matmul_dtype: str = None       # float32 matmul inputs are cast to this (None: left as they are)
    tf32: bool = False             # cuBLAS may use TF32 tensor cores for float32 matmuls
    loss_scaling: bool = False     # the Trainer multiplies the loss by a LossScaler's scale


POLICIES = {"fp32": Policy("fp32"),
            "tf32": Policy("tf32", tf32=True),
            "fp16": Policy("fp16", matmul_dtype="float16", loss_scaling=True)}

_current = POLICIES["fp32"]
_listeners = []                    # called with the new Policy after every use()


def current():
    """The policy in force (fp32 unless use() chose another)."""
    return _current


def use(name):
    """Choose the precision policy: "fp32", "tf32" or "fp16" (mixed precision)."""
    global _current
    if name not in POLICIES:
        raise UserError(f"unknown precision {name!r}: use one of {sorted(POLICIES)}")
    _current = POLICIES[name]
    for listener in _listeners:
        listener(_current)
    return _current


def on_change(listener):
    """Call listener(policy) whenever use() sets a policy (backend switches TF32 in cuBLAS this way)."""
    _listeners.append(listener)
    return listener


@contextlib.contextmanager
def policy(name):
    """with precision.policy("fp16"): ... runs the block under that policy, then restores the old one."""
    saved = _current.name
    use(name)
    try:
        yield _current
    finally:
        use(saved)


def to_compute(x):
    """x as a matmul input under the policy: float32 x becomes float16 under "fp16"; else x itself."""
    dtype = _current.matmul_dtype
    if dtype is None or x.dtype != np.float32:
        return x
    return x.astype(dtype)


def upcast(x):
    """float16 x as float32 (softmax, norms, losses and gradient norms sum in float32); else x itself."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def matmul(a, b):
    """a @ b with both operands cast by to_compute (float16 under "fp16": the product is float16).

    NumPy has no float16 GEMM, so there float16 operands are multiplied in float32 and the product
    rounded to float16, as cuBLAS does (float16 in, float32 accumulation, float16 out).
    """
    a, b = to_compute(a), to_compute(b)
    if a.dtype == np.float16 and b.dtype == np.float16 and isinstance(a, np.ndarray):
        return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16)
    return a @ b


def compute_dtype(dtype):
    """The dtype to_compute gives an array of dtype: float16 for float32 under "fp16"; else dtype."""
    dtype = np.dtype(dtype)
    if _current.matmul_dtype is None or dtype != np.float32:
        return dtype
    return np.dtype(_current.matmul_dtype)


def product_dtype(a_dtype, b_dtype):
    """The dtype of matmul(a, b) for operands of these dtypes (float16 for float32 under "fp16")."""
    if _current.matmul_dtype is None and a_dtype == b_dtype:   # the common case, in a hot path
        return a_dtype
    return np.result_type(compute_dtype(a_dtype), compute_dtype(b_dtype))
