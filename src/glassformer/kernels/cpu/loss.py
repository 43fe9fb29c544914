"""Cross-entropy with 16-bit logits computed in float32; the log-softmax a few rows at a time.

Laid over layers.loss.cross_entropy_forward / cross_entropy_backward; the cache is the reference's.
GPT-2's logits (256 x 50257, 51 MB) are bigger than any cache: the forward's max, subtract, exp,
sum and log passes run on blocks of rows that fit L2, exp into one reused scratch block instead of
a 51 MB temporary (whose fresh pages alone cost more than the exp). Each row sees the same
operations, so the numbers are the same bit for bit.
"""
import numpy as np

from ... import backend
from ...backend import array_module, upcast
from .pool import over_rows

ROW_BLOCK = 1 << 16                     # numbers: 256 KB of float32 rows, held in L2 through 5 passes


def row_block(n_rows, row_size, xp=np):
    """Rows a pass of the log-softmax takes at once: about ROW_BLOCK numbers (at least one row), so
    its five passes stay in the cache; CuPy: all of them, one kernel per pass."""
    if xp is not np:
        return max(n_rows, 1)
    return max(1, min(n_rows, ROW_BLOCK // max(row_size, 1)))


@backend.accelerates("cross_entropy_forward", device="cpu")
def cross_entropy_forward_cpu(logits, targets, ignore_index=None):
    """cross_entropy_forward(): 16-bit logits in float32, the count in the loss's dtype."""
    xp = array_module(logits)
    V = logits.shape[-1]
    z = upcast(logits.reshape(-1, V))                       # (N, V); 16-bit logits: in float32
    t = targets.reshape(-1)                                 # (N,)
    log_probs = xp.empty_like(z)                            # (N, V)

    step = row_block(*z.shape, xp=xp)
    scratch = xp.empty((min(step, z.shape[0]), V), z.dtype)   # exp's rows, reused: cache-sized

    def part(a, b):                                         # rows a:b, as one thread would do them
        e = scratch if a == 0 else xp.empty_like(scratch)   # each thread its own scratch
        for i in range(a, b, step):                         # a few rows at a time: each pass reads
            j = min(i + step, b)                            # what the last left in the cache
            za = xp.subtract(z[i:j], z[i:j].max(axis=-1, keepdims=True), out=log_probs[i:j])
            ea = xp.exp(za, out=e[:j - i])
            za -= xp.log(ea.sum(axis=-1, keepdims=True))    # log-softmax without overflow
    over_rows(part, *z.shape, xp=xp)
    counted = xp.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    safe_t = xp.where(counted, t, 0)
    picked = log_probs[xp.arange(t.shape[0]), safe_t]       # (N,)
    n = xp.maximum(counted.sum(), 1).astype(z.dtype)        # tokens counted; z's dtype, not int64
    loss = -(picked * counted).sum() / n                    # 0-d array: no host sync
    return loss, (log_probs, safe_t, counted, n, logits.shape)


@backend.accelerates("cross_entropy_backward", device="cpu")
def cross_entropy_backward_cpu(dout, cache):
    """cross_entropy_backward(): the row weights in the gradient's dtype."""
    log_probs, t, counted, n, shape = cache
    xp = array_module(log_probs)
    dz = xp.empty_like(log_probs)                           # (N, V)
    weights = (counted / n).astype(dz.dtype)[:, None] * dout   # (N, 1)

    def part(a, b):                                         # rows a:b, as one thread would do them
        da = xp.exp(log_probs[a:b], out=dz[a:b])            # softmax
        da[xp.arange(b - a), t[a:b]] -= 1.0
        da *= weights[a:b]
    over_rows(part, *log_probs.shape, xp=xp)
    return dz.reshape(shape)
