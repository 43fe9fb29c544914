"""Cross-entropy over integer targets, with a numerically stable log-softmax."""
from ..backend import accelerated, array_module
from .base import Layer


@accelerated
def cross_entropy_forward(logits, targets, ignore_index=None):
    """Mean of -log softmax(logits)[target] over the targets that are not ignore_index; (loss, cache)."""
    xp = array_module(logits)
    V = logits.shape[-1]
    z = logits.reshape(-1, V)                               # (N, V)
    t = targets.reshape(-1)                                 # (N,)
    z = z - z.max(axis=-1, keepdims=True)                   # log-softmax without overflow
    logsumexp = xp.log(xp.exp(z).sum(axis=-1, keepdims=True))
    log_probs = z - logsumexp                               # (N, V)
    counted = xp.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    safe_t = xp.where(counted, t, 0)
    picked = log_probs[xp.arange(t.shape[0]), safe_t]       # (N,)
    n = max(int(counted.sum()), 1)                          # tokens counted
    loss = -(picked * counted).sum() / n                    # 0-d
    return loss, (log_probs, safe_t, counted, n, logits.shape)


@accelerated
def cross_entropy_backward(dout, cache):
    """dlogits = (softmax - onehot(target)) / n * dout on counted rows, 0 on ignored rows."""
    log_probs, t, counted, n, shape = cache
    xp = array_module(log_probs)
    dz = xp.exp(log_probs)                                  # softmax, (N, V)
    dz[xp.arange(t.shape[0]), t] -= 1.0
    dz *= (counted / n)[:, None] * dout
    return dz.reshape(shape)


class CrossEntropyLoss(Layer):
    """Mean of -log softmax(logits)[target] over the tokens whose target is not ignore_index."""

    def __init__(self, ignore_index=None):
        self.ignore_index = ignore_index

    def forward(self, logits, targets):                     # logits: (..., V), targets: (...)
        loss, self.cache = cross_entropy_forward(logits, targets, self.ignore_index)
        return loss

    def backward(self, dout=1.0):
        return cross_entropy_backward(dout, self.cache)
