"""A thread pool for the overlay's element-wise chains: one big array's rows split over the cores.

NumPy releases the GIL inside its ufunc loops, so the parts of one chain of passes (the
cross-entropy's log-softmax and its gradient) can run at once on several threads. Each part is a run of whole rows (or of a flat
array's elements) done exactly as one thread would do it: no reduction is ever split, so the numbers
are the same bit for bit at any thread count (tests/test_backend_kernels.py checks 1, 2 and 3). The
count is backend.cpu_threads() (--threads, GLASSFORMER_THREADS, else every core), the BLAS's too.
Measured on a 2-core machine shared with other work (bench/threads.py): two threads were slower
than one for parts of 0.4M numbers (GELU, 256 x 3072) and 2M (AdamW's pieces, the clip norm), and
faster (0.8x) for the 6.4M of cross-entropy's 256 x 50257 logits, so only the cross-entropy uses the
pool, and only for arrays of at least 2 x MIN_PART numbers.
"""
import contextvars
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ... import backend

MIN_PART = 1 << 22                      # elements: below 2 x this an array is not worth splitting
ALIGN = 64                              # rows: every part but the last is a multiple of this long
_pool = [None, 0]                       # the executor and its thread count, made on first use


def executor(n):
    """The pool of n threads (remade when the count changes)."""
    if _pool[1] != n:
        if _pool[0] is not None:
            _pool[0].shutdown(wait=True)
        _pool[:] = [ThreadPoolExecutor(n, thread_name_prefix="glassformer-cpu"), n]
    return _pool[0]


def parts(n_rows, row_size=1, xp=np, align=ALIGN):
    """[(start, stop)] runs of rows covering range(n_rows), one a thread, each >= MIN_PART elements
    (one part on a single thread, for a small array, or for a CuPy one).

    Each part starts on a multiple of ALIGN rows: BLAS's matrix-vector kernels (the row sums) take
    rows in groups of 4 or 8 and the leftover rows another way, whose sum can differ in the last bit;
    a part of 402 rows would leave 2 rows to the leftover path that the whole array's pass does not
    (measured: 2 threads differed from 1 where 3 did not). Units summed alone (Adam's pieces) need
    align=1."""
    k = min(backend.cpu_threads(), n_rows // align, n_rows * row_size // MIN_PART) if xp is np else 1
    k = max(k, 1)
    bounds = [n_rows * i // k // align * align for i in range(k)] + [n_rows]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def each(fn, spans):
    """fn(start, stop) for every span: on the pool when there are several, else here; results in order.

    Each runs in a copy of the caller's context: np.errstate lives in a context variable, so a
    worker keeps the caller's (train_step's quiet overflow) instead of its own thread's default."""
    if len(spans) == 1:
        return [fn(*spans[0])]
    jobs = [(contextvars.copy_context(), span) for span in spans]   # one context each: not shareable
    return list(executor(backend.cpu_threads()).map(lambda job: job[0].run(fn, *job[1]), jobs))


def over_rows(fn, n_rows, row_size=1, xp=np, align=ALIGN):
    """fn(start, stop) over parts(n_rows, row_size, xp, align): the rows split among the threads."""
    return each(fn, parts(n_rows, row_size, xp, align))
