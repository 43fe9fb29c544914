"""Cache tiling: run a chain of element-wise passes over a big array one small tile at a time.

GELU is eight in-place NumPy passes over its input. On a (768, 512) float32 array (1.5 MB, several
such arrays) every pass streams through memory, since they do not fit a core's L2 cache together; run
on tiles of TILE elements, each pass after the first reads what the last one left in the cache (GELU
forward and backward measured 20-30% faster). The numbers are the same: each element sees the same
operations. CuPy gets one tile, the whole array: one kernel per pass is best there.
"""
import numpy as np

from ...backend import array_module

TILE = 1 << 15                          # elements: 128 KB of float32 per array, a few fit in L2


def flat_tiles(x):
    """Slices covering x.reshape(-1) in order, TILE elements each (the last may be shorter)."""
    n = x.size
    if array_module(x) is not np or n <= TILE:
        return [slice(0, n)]
    return [slice(i, min(i + TILE, n)) for i in range(0, n, TILE)]
