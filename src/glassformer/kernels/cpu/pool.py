"""A thread pool for the overlay's element-wise chains: one big array's rows split over the cores.

NumPy releases the GIL inside its ufunc loops, so the parts of one chain of passes (GELU, a softmax,
a LayerNorm) can run at once on several threads. Each part is a run of whole rows (or of a flat
array's elements) done exactly as one thread would do it: no reduction is ever split, so the numbers
are the same bit for bit at any thread count (tests/test_backend_kernels.py checks 1, 2 and 3). The
count is backend.cpu_threads() (--threads, GLASSFORMER_THREADS, else every core), the BLAS's too.
An array under MIN_PART elements a part runs on the calling thread: handing work over costs ~50 us.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ... import backend

MIN_PART = 1 << 16                      # elements: below 2 x this an array is not worth splitting
_pool = [None, 0]                       # the executor and its thread count, made on first use


def executor(n):
    """The pool of n threads (remade when the count changes)."""
    if _pool[1] != n:
        if _pool[0] is not None:
            _pool[0].shutdown(wait=True)
        _pool[:] = [ThreadPoolExecutor(n, thread_name_prefix="glassformer-cpu"), n]
    return _pool[0]


def parts(n_rows, row_size=1, xp=np):
    """[(start, stop)] runs of rows covering range(n_rows), one a thread, each >= MIN_PART elements
    (one part on a single thread, for a small array, or for a CuPy one)."""
    k = min(backend.cpu_threads(), n_rows, n_rows * row_size // MIN_PART) if xp is np else 1
    k = max(k, 1)
    bounds = [n_rows * i // k for i in range(k + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def each(fn, spans):
    """fn(start, stop) for every span: on the pool when there are several, else here; results in order."""
    if len(spans) == 1:
        return [fn(*spans[0])]
    return list(executor(backend.cpu_threads()).map(lambda span: fn(*span), spans))


def over_rows(fn, n_rows, row_size=1, xp=np):
    """fn(start, stop) over parts(n_rows, row_size): the rows split among the threads."""
    return each(fn, parts(n_rows, row_size, xp))
