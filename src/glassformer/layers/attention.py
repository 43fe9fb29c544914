"""Multi-head scaled dot-product attention (Vaswani et al. 2017), forward and exact backward.

Shapes: B batch, T query length, S key length, C = d_model, H = n_heads, D = d_head = C // H.
"""
from ..backend import accelerated, array_module
from .base import Layer
from .linear import Linear
from .activations import softmax, softmax_backward


def split_heads(x, n_heads):
    """(B, T, C) -> (B, H, T, D)."""
    B, T, C = x.shape
    return x.reshape(B, T, n_heads, C // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, D) -> (B, T, C)."""
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def attention_mask(xp, T, S, causal, key_padding_mask=None, offset=0):
    """Boolean (B or 1, 1, T, S) of allowed query->key pairs, or None when all are allowed.

    causal: query i (at absolute position offset + i) sees keys 0..offset + i.
    key_padding_mask: (B, S) True for real tokens, False for padding.
    """
    allowed = None
    if causal:
        allowed = (xp.arange(S)[None, :] <= xp.arange(T)[:, None] + offset)[None, None]  # (1, 1, T, S)
    if key_padding_mask is not None:
        pad = xp.asarray(key_padding_mask, dtype=bool)[:, None, None, :]             # (B, 1, 1, S)
        allowed = pad if allowed is None else (allowed & pad)
    return allowed


@accelerated
def attend(q, k, v, allowed):
    """softmax(q k^T / sqrt(D) masked) v for all (batch, head) pairs in one batched matmul."""
    xp = array_module(q)
    D = q.shape[-1]
    scores = q @ k.transpose(0, 1, 3, 2) / D ** 0.5                    # (B, H, T, S)
    if allowed is not None:                     # the lowest finite number where not allowed: exp
        scores = xp.where(allowed, scores, xp.finfo(scores.dtype).min)   # gives 0, and no NaN rows
    att = softmax(scores, axis=-1)                                      # (B, H, T, S)
    return att @ v, att                                                 # (B, H, T, D)


@accelerated
def attend_backward(dy, q, k, v, att):
    """Gradients of attend() w.r.t. q, k, v (masked pairs have att = 0, so they get none)."""
    D = q.shape[-1]
    dv = att.transpose(0, 1, 3, 2) @ dy                                 # y = att @ v
    datt = dy @ v.transpose(0, 1, 3, 2)                                 # (B, H, T, S)
    dscores = softmax_backward(datt, att) / D ** 0.5                    # att = softmax(scores)
    dq = dscores @ k                                                    # scores = q k^T / sqrt(D)
    dk = dscores.transpose(0, 1, 3, 2) @ q
    return dq, dk, dv


def cache_append(cache, k, v):
    """Write k, v (B, H, T, D) after the cached ones in preallocated buffers; returns the filled views.

    The buffers (B, H, capacity, D) hold cache["max_len"] positions (or grow by doubling when that is
    unset or too small), so each decoding step copies only its new keys instead of concatenating all.
    """
    xp = array_module(k)
    L, T = (cache["k"].shape[2] if "k" in cache else 0), k.shape[2]
    buf = cache.get("k_buf")
    if buf is None or buf.shape[2] < L + T or buf.shape[:2] != k.shape[:2] or buf.dtype != k.dtype:
        capacity = max(cache.get("max_len", 0), 2 * (L + T))
        shape = (k.shape[0], k.shape[1], capacity, k.shape[3])
        cache["k_buf"], cache["v_buf"] = xp.empty(shape, k.dtype), xp.empty(shape, v.dtype)
        if L:                                               # carry over what was cached
            cache["k_buf"][:, :, :L], cache["v_buf"][:, :, :L] = cache["k"], cache["v"]
    cache["k_buf"][:, :, L:L + T] = k
    cache["v_buf"][:, :, L:L + T] = v
    cache["k"], cache["v"] = cache["k_buf"][:, :, :L + T], cache["v_buf"][:, :, :L + T]
    return cache["k"], cache["v"]                           # (B, H, L + T, D) views, no copy


class MultiHeadAttention(Layer):
    """Self-attention with H heads; one C x 3C projection for q, k, v (fused_qkv) or three.

    forward(x, key_padding_mask=None, cache=None): with a cache (a dict per layer, for generation;
    {"max_len": N} preallocates N positions) the new keys and values are written after the cached
    ones and the queries attend to everything cached so far.
    """

    def __init__(self, d_model, n_heads, rng, causal=False, fused_qkv=True, init="xavier",
                 out_init=None, dtype="float32", bias=True):
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.causal, self.fused_qkv = n_heads, causal, fused_qkv
        if fused_qkv:
            self.qkv = Linear(d_model, 3 * d_model, rng, bias=bias, init=init, dtype=dtype)
        else:
            self.q_proj = Linear(d_model, d_model, rng, bias=bias, init=init, dtype=dtype)
            self.k_proj = Linear(d_model, d_model, rng, bias=bias, init=init, dtype=dtype)
            self.v_proj = Linear(d_model, d_model, rng, bias=bias, init=init, dtype=dtype)
        self.proj = Linear(d_model, d_model, rng, bias=bias, init=out_init or init, dtype=dtype)
        self.last_attention_weights = None                  # (B, H, T, S), the real weights

    def project_qkv(self, x):
        """x (B, T, C) -> q, k, v each (B, H, T, D)."""
        B, T, C = x.shape
        H = self.n_heads
        if self.fused_qkv:
            qkv = self.qkv.forward(x).reshape(B, T, 3, H, C // H).transpose(2, 0, 3, 1, 4)
            return qkv[0], qkv[1], qkv[2]                   # (B, H, T, D) each
        return (split_heads(self.q_proj.forward(x), H), split_heads(self.k_proj.forward(x), H),
                split_heads(self.v_proj.forward(x), H))

    def project_qkv_backward(self, dq, dk, dv):
        """Gradient w.r.t. x of project_qkv, from dq, dk, dv each (B, H, T, D)."""
        if self.fused_qkv:
            xp = array_module(dq)
            B, H, T, D = dq.shape
            dqkv = xp.empty((B, T, 3, H, D), dq.dtype)      # the layout qkv.forward's output had
            for i, d in enumerate((dq, dk, dv)):
                dqkv[:, :, i] = d.transpose(0, 2, 1, 3)     # one strided copy each, no stack
            return self.qkv.backward(dqkv.reshape(B, T, 3 * H * D))
        return (self.q_proj.backward(merge_heads(dq)) + self.k_proj.backward(merge_heads(dk))
                + self.v_proj.backward(merge_heads(dv)))

    def forward(self, x, key_padding_mask=None, cache=None):  # x: (B, T, C)
        xp = array_module(x)
        q, k, v = self.project_qkv(x)
        offset = cache["k"].shape[2] if cache is not None and "k" in cache else 0
        if cache is not None:                               # incremental decoding, inference only
            k, v = cache_append(cache, k, v)                # (B, H, S, D): cached + new
        causal = self.causal and offset < k.shape[2] - 1      # else every query sees every key
        allowed = attention_mask(xp, q.shape[2], k.shape[2], causal, key_padding_mask, offset)
        y, att = attend(q, k, v, allowed)
        self.q, self.k, self.v, self.att = q, k, v, att
        self.last_attention_weights = att
        return self.proj.forward(merge_heads(y))             # (B, T, C)

    def backward(self, dout):                               # dout: (B, T, C)
        dy = split_heads(self.proj.backward(dout), self.n_heads)          # (B, H, T, D)
        dq, dk, dv = attend_backward(dy, self.q, self.k, self.v, self.att)
        return self.project_qkv_backward(dq, dk, dv)        # (B, T, C)

    def children(self):
        if self.fused_qkv:
            return {"qkv": self.qkv, "proj": self.proj}
        return {"q_proj": self.q_proj, "k_proj": self.k_proj, "v_proj": self.v_proj,
                "proj": self.proj}
