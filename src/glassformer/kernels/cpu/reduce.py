"""Sums over one axis as BLAS matrix-vector products, and row-wise dot products.

NumPy's reduce over a short last axis (64 to 512 numbers per row, as in LayerNorm and attention) pays
its loop set-up once per row; x @ ones is one matrix-vector product over the whole array, several
times faster for the same sum (the order of the additions differs: the last bits may too).
"""
import functools

import numpy as np

from ...backend import array_module


@functools.lru_cache(maxsize=64)
def _numpy_ones(n, dtype):
    """A read-only NumPy vector of n ones, built once: np.ones per call cost 0.7 ms a training step."""
    v = np.ones(n, dtype)
    v.flags.writeable = False
    return v


def ones(xp, n, dtype):
    """n ones of dtype in module xp (cached on NumPy; CuPy builds them on the current device)."""
    return _numpy_ones(n, np.dtype(dtype)) if xp is np else xp.ones(n, dtype)


def row_sum(x):
    """x.sum(axis=-1, keepdims=True) of a contiguous x (..., C), as x @ ones."""
    xp = array_module(x)
    C = x.shape[-1]
    if x.size == 0:                                         # nothing to multiply: NumPy's empty sum
        return x.sum(axis=-1, keepdims=True)
    return (x.reshape(-1, C) @ ones(xp, C, x.dtype)).reshape(*x.shape[:-1], 1)    # (..., 1)


def row_mean(x):
    """x.mean(axis=-1, keepdims=True) of a contiguous x (..., C): row_sum(x) / C."""
    total = row_sum(x)
    total /= x.shape[-1]
    return total


def row_dot(a, b):
    """(a * b).sum(axis=-1, keepdims=True) without the product array: one dot product per row.

    NumPy 2's vecdot (else einsum) reads a and b once and writes only the (..., 1) result, where
    row_sum(a * b) would first write and reread the whole product.
    """
    xp = array_module(a)
    vecdot = getattr(xp, "vecdot", None)
    dots = vecdot(a, b) if vecdot is not None else xp.einsum("...c,...c->...", a, b)
    return dots[..., None]                                  # (..., 1)


def column_sum(x2, dtype=None):
    """x2.sum(axis=0) of a 2-D x2 (N, C), as ones @ x2, summed in dtype (default x2's): (C,)."""
    xp = array_module(x2)
    dtype = dtype or x2.dtype
    return ones(xp, x2.shape[0], dtype) @ x2.astype(dtype, copy=False)


def axis_dot(a, b, axis):
    """(a * b).sum(axis=axis, keepdims=True): row_dot when axis is the last one, else NumPy's reduce."""
    if axis in (-1, a.ndim - 1):
        return row_dot(a, b)
    return (a * b).sum(axis=axis, keepdims=True)


def axis_sum(x, axis):
    """x.sum(axis=axis, keepdims=True): row_sum when axis is the last one, else NumPy's reduce."""
    if axis in (-1, x.ndim - 1):
        return row_sum(x)
    return x.sum(axis=axis, keepdims=True)
