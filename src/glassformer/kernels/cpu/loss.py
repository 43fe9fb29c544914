"""Cross-entropy with 16-bit logits computed in float32.

Laid over layers.loss.cross_entropy_forward / cross_entropy_backward; the cache is the reference's.
"""
from ... import backend
from ...backend import array_module, upcast
from .pool import over_rows


@backend.accelerates("cross_entropy_forward", device="cpu")
def cross_entropy_forward_cpu(logits, targets, ignore_index=None):
    """cross_entropy_forward(): 16-bit logits in float32, the count in the loss's dtype."""
    xp = array_module(logits)
    V = logits.shape[-1]
    z = upcast(logits.reshape(-1, V))                       # (N, V); 16-bit logits: in float32
    t = targets.reshape(-1)                                 # (N,)
    log_probs = xp.empty_like(z)                            # (N, V)

    def part(a, b):                                         # rows a:b, as one thread would do them
        za = xp.subtract(z[a:b], z[a:b].max(axis=-1, keepdims=True), out=log_probs[a:b])
        za -= xp.log(xp.exp(za).sum(axis=-1, keepdims=True))   # log-softmax without overflow
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
