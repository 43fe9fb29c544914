"""Cross-entropy over integer targets, with a numerically stable log-softmax."""
from .. import backend
from ..backend import array_module, upcast
from .base import Layer


class CrossEntropyLoss(Layer):
    """Mean of -log softmax(logits)[target] over the tokens whose target is not ignore_index."""

    def __init__(self, ignore_index=None):
        self.ignore_index = ignore_index

    def forward(self, logits, targets):                     # logits: (..., V), targets: (...)
        self.fused = backend.fused("cross_entropy", logits)   # GPU: keeps logsumexp, not log-probs
        if self.fused is not None:
            loss, self.cache = self.fused.forward(logits, targets, self.ignore_index)
            return loss
        xp = array_module(logits)
        V = logits.shape[-1]
        z = upcast(logits.reshape(-1, V))                   # (N, V), float32 for float16 logits
        t = targets.reshape(-1)                             # (N,)
        z = z - z.max(axis=-1, keepdims=True)               # log-softmax without overflow
        logsumexp = xp.log(xp.exp(z).sum(axis=-1, keepdims=True))
        log_probs = z - logsumexp                           # (N, V)
        counted = xp.ones(t.shape, dtype=bool) if self.ignore_index is None else t != self.ignore_index
        safe_t = xp.where(counted, t, 0)
        picked = log_probs[xp.arange(t.shape[0]), safe_t]   # (N,)
        self.n = xp.maximum(counted.sum(), 1).astype(z.dtype)  # tokens counted; z's dtype, not int64
        self.shape, self.log_probs, self.t, self.counted = logits.shape, log_probs, safe_t, counted
        return -(picked * counted).sum() / self.n           # 0-d array: no host sync

    def backward(self, dout=1.0):
        """dlogits = (softmax - onehot(target)) / n on counted rows, 0 on ignored rows."""
        if self.fused is not None:
            return self.fused.backward(self.cache, dout)
        xp = array_module(self.log_probs)
        dz = xp.exp(self.log_probs)                         # softmax, (N, V)
        dz[xp.arange(self.t.shape[0]), self.t] -= 1.0
        dz *= (self.counted / self.n).astype(dz.dtype)[:, None] * dout
        return dz.reshape(self.shape)
